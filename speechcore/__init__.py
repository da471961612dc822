"""Ray-free core of the speech server: settings, audio, schemas, scoring, storage, backends."""
