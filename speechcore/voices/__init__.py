"""TTS voices: the catalog (stable ids, language routing) and the speaker-collection store."""
