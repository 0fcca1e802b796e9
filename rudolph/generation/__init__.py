"""Generation and scoring over a RuDOLPH model: sampling (:mod:`~rudolph.generation.sampling`), the
cached decoder and cross-entropy scoring (:mod:`~rudolph.generation.engine`), rows with different
prefixes (:mod:`~rudolph.generation.rows`) and the memory check (:mod:`~rudolph.generation.memory`)."""
