"""The streaming runtime: a ``Narrator`` turns sentences into audio chunks.

``narrator`` (the narrator: text in, audio chunks out), ``feeding`` (each stream's sentences
phonemized and encoded ahead on a thread), ``pauses`` (pauses shaped in the frame domain),
``cuts`` (where each sentence's audio ends), ``vocoding`` (the vocoder process), ``decoders``
(the decoder processes), ``children`` (forking, signals and stopping those processes), ``heap``
(glibc's malloc kept from growing over a long run).
"""
