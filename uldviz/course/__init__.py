"""The course's own tooling, above everything it describes: lesson statistics and times (:mod:`.lessons`), the
static site (:mod:`.site`), the README's results block (:mod:`.report`) and docs/scale.md's blocks
(:mod:`.scale_docs`), the notation table, Colab launch cells and generated text blocks."""
