"""Offline batch transcription on Ray Data (`python -m batch.transcribe INPUT OUTPUT.parquet`)."""
