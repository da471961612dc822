"""The job service's Ray-free core: the job store, results and exports, voiceprint matching."""
