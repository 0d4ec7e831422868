"""The synthetic sign corpus: the embedded default's data, a concern of its own beside ``data/``.

- :mod:`.profiles`: what a profile is (``toy``, ``phoenix``), the frozen seed and hash, the
  paraphrase planting and signer assignment of the phoenix profile;
- :mod:`.toy`: the toy profile's small English grammar (83 word types), for unit tests;
- :mod:`.weather`: the phoenix profile's language (English weather forecasts) with meanings,
  surface forms and sign sequences;
- :mod:`.render`: the signs (lexicon, fingerspelling), the signers, the signing timeline
  (speed, transitions, co-articulation), the drawing, detector misses, mp4/.pose writing;
- :mod:`.corpus`: ``generate`` (``slt-llm synth``): manifests, videos, keypoints, corpus.json;
- :mod:`.stats`: corpus statistics beside PHOENIX-2014T's (``slt-llm corpus-stats``).

It sits above ``data`` (it writes manifests and .pose files with data's writers) and below
``models`` (the stand-in LLM reads the language's extra sentences).
"""
