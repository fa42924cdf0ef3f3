"""Text front-end: spoken-form normalization, sentence segmentation, pronunciation lexicon,
and live (streaming) sentence reading."""
