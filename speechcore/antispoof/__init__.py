"""Anti-spoofing: the features the shipped ONNX detector reads, and the audio-quality check."""
