"""Reader for the Princeton WordNet 3.0 database files (`data.noun`, `man 5 wndb`).

Only what the dataset generator needs: synsets with their lemmas, gloss and
pointers. Standard library only, so CI can run the generator's tests.
"""

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Tuple


class WordNetFormatError(Exception):
    """A line of a WordNet data file does not follow the wndb(5) layout."""

    def __init__(self, path: str, line_number: int, reason: str):
        super().__init__(f"{path}:{line_number}: {reason}")


# The 45 lexicographer file names (`man 5 lexnames`); the Debian package does not
# ship the `lexnames` file itself.
LEXNAMES = [
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal",
    "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
    "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon",
    "noun.plant", "noun.possession", "noun.process", "noun.quantity",
    "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication",
    "verb.competition", "verb.consumption", "verb.contact", "verb.creation",
    "verb.emotion", "verb.motion", "verb.perception", "verb.possession",
    "verb.social", "verb.stative", "verb.weather", "adj.ppl",
]


@dataclass
class Synset:
    offset: str                 # 8-digit byte offset: the synset's id within its file
    lexname: str                # e.g. "noun.state"
    lemmas: List[str]           # surface forms, underscores turned into spaces
    pointers: List[Tuple[str, str, str]] = field(default_factory=list)  # (symbol, offset, pos)
    definition: str = ""        # gloss without the quoted examples
    examples: List[str] = field(default_factory=list)

    def targets(self, *symbols: str) -> List[str]:
        """Offsets of noun synsets reached by the given pointer symbols."""
        return [off for sym, off, pos in self.pointers if sym in symbols and pos == "n"]


def _clean_lemma(word: str) -> str:
    # Adjective markers like "(a)" only occur in adjective files; nouns keep
    # their case (proper names such as "Down's syndrome").
    return word.replace("_", " ")


def split_gloss(gloss: str) -> Tuple[str, List[str]]:
    """Split a gloss into its definition and its quoted usage examples."""
    gloss = gloss.strip()
    examples: List[str] = []
    # Examples are the trailing `"..."` parts separated by "; ".
    first_quote = gloss.find('"')
    if first_quote == -1:
        return gloss.rstrip("; ").strip(), examples
    definition = gloss[:first_quote].rstrip().rstrip(";").strip()
    rest = gloss[first_quote:]
    for part in rest.split('"'):
        part = part.strip()
        if part and part not in (";", ",", ";;"):
            examples.append(part)
    return definition, examples


def parse_data_line(line: str, path: str = "data.noun", line_number: int = 0) -> Synset:
    fields_part, sep, gloss = line.partition(" | ")
    if not sep:
        fields_part, gloss = line.rstrip(), ""
    tokens = fields_part.split()
    try:
        offset = tokens[0]
        lex_filenum = int(tokens[1])
        word_count = int(tokens[3], 16)
        lemmas = [_clean_lemma(tokens[4 + 2 * i]) for i in range(word_count)]
        index = 4 + 2 * word_count
        pointer_count = int(tokens[index])
        pointers = []
        for i in range(pointer_count):
            base = index + 1 + 4 * i
            pointers.append((tokens[base], tokens[base + 1], tokens[base + 2]))
    except (IndexError, ValueError) as error:
        raise WordNetFormatError(path, line_number, f"malformed synset fields ({error})")
    if not 0 <= lex_filenum < len(LEXNAMES):
        raise WordNetFormatError(path, line_number, f"unknown lexicographer file {lex_filenum}")
    definition, examples = split_gloss(gloss)
    return Synset(offset, LEXNAMES[lex_filenum], lemmas, pointers, definition, examples)


def read_data_file(path: str) -> Dict[str, Synset]:
    """All synsets of one `data.<pos>` file keyed by offset (license header skipped)."""
    synsets: Dict[str, Synset] = {}
    with open(path, encoding="utf-8", errors="strict") as handle:
        for number, line in enumerate(handle, start=1):
            if line.startswith("  "):   # the license header lines start with two spaces
                continue
            if not line.strip():
                continue
            synset = parse_data_line(line.rstrip("\n"), path, number)
            synsets[synset.offset] = synset
    return synsets


def hyponym_closure(synsets: Dict[str, Synset], root: str) -> List[str]:
    """The root and everything below it via hyponym and instance-hyponym pointers,
    in breadth-first order (deterministic: pointer order comes from the file)."""
    seen = {root} if root in synsets else set()
    order = [root] if root in synsets else []
    i = 0
    while i < len(order):
        for child in synsets[order[i]].targets("~", "~i"):
            if child in synsets and child not in seen:
                seen.add(child)
                order.append(child)
        i += 1
    return order
