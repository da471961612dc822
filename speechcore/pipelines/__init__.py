"""Pure pipeline steps over arrays and typed results, shared by every caller.

The Serve request graphs (graphs/), a job worker and a Ray Data stage call the
same functions: planning what to decode, merging what came back, shaping
segments. Nothing here imports Ray, FastAPI or a model.
"""
