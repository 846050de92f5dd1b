// Wire carries the shared vocabulary (messages, deadlines, log hygiene): a node that imports
// Wire sees it too. Libraries that only speak the vocabulary import Vocabulary, never Wire.
@_exported import Vocabulary
