"""Hygiene for a 2006 lexical database used as clinical QA data.

WordNet 3.0 keeps headwords and glosses that are outdated or offensive today
(e.g. "mongolism" as a name of Down syndrome). The generator applies these
tables before any question is written; data/README.md lists them for readers.
Every entry is matched exactly, so the effect is auditable and stable.
"""

import re

# Lemmas removed from their synset (the synset stays if other names remain).
DENIED_LEMMAS = {
    "mongolism": "outdated, offensive name for Down syndrome",
    "mongolianism": "outdated, offensive name for Down syndrome",
    "gargoylism": "stigmatising name for Hurler syndrome",
    "harelip": "outdated, stigmatising name for cleft lip",
    "gimp": "slur (lameness)",
    "gimpiness": "slur (lameness)",
    "gameness": "slang for lameness, clashes with 'courage'",
    "knocker": "vulgar slang (breast)",
    "boob": "vulgar slang (breast)",
    "tit": "vulgar slang (breast)",
    "titty": "vulgar slang (breast)",
    "hickey": "slang, clashes with 'love bite'",
    "epidemic hysertia": "misspelt headword in WordNet 3.0",
    "spastic paralysis": "'spastic' is used as a slur; 'cerebral palsy' kept",
    "spastic colon": "'spastic' is used as a slur; 'irritable bowel syndrome' kept",
}

# Whole synsets dropped, by offset in data.noun, with the reason.
DENIED_SYNSETS = {
    "14504726": "'deflection, warp': a perverse way of judging, not a medical condition",
    "14391319": "'retarded depression': outdated label (psychomotor retardation)",
}

# Synsets dropped by WordNet's own usage label (a ";u" pointer to one of these synsets):
# vulgar names and slurs are not answers a clinical assistant should learn or give.
DENIED_USAGE_DOMAINS = {
    "07124340": "WordNet usage label: obscenity",
    "06718862": "WordNet usage label: ethnic slur",
    "06717170": "WordNet usage label: disparagement",
}

# Glosses that say the synset is a vulgar name, for synsets WordNet did not label
# ("minge: vulgar term for ...", "the shits: obscene terms for diarrhea").
VULGAR_GLOSS = re.compile(r"^(obscene|vulgar) (terms?|slang) ")

# Subtrees dropped (offset of the root): not human medicine.
DENIED_SUBTREES = {
    "14276936": "plant disease and its hyponyms (crop diseases, not clinical)",
}

# Gloss rewrites (exact substring -> replacement), applied in this order.
GLOSS_REWRITES = [
    ("mental retardation", "intellectual disability"),
    ("mentally retarded", "with intellectual disability"),
    ("feeblemindedness", "intellectual disability"),
    ("normal for Mongolian peoples", "common in East Asian peoples"),
    ("occurs in some primitive tribes", "occurs in some cultures"),
    ("due to crippling of the legs or feet", "due to impairment of the legs or feet"),
    ("an error is mucopolysaccharide", "an error in mucopolysaccharide"),
]


def vulgar_reason(usage_domains, gloss: str):
    """Why a synset is a vulgar name or a slur (None if it is not): its usage label, or its gloss."""
    for domain in usage_domains:
        if domain in DENIED_USAGE_DOMAINS:
            return DENIED_USAGE_DOMAINS[domain]
    if VULGAR_GLOSS.match(gloss):
        return "gloss marks it as a vulgar name"
    return None


def clean_gloss(text: str) -> str:
    for old, new in GLOSS_REWRITES:
        text = text.replace(old, new)
    return text
