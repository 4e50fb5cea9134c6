"""Training an EnCodec audio codec (transformers' ``EncodecModel``) on a catalogue or a corpus."""
