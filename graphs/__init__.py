"""Request graphs and the FastAPI ingress that compose the model deployments."""
