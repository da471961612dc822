"""The baseline for bench/startup.py: a Serve app with one trivial deployment."""
from ray import serve


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Hello:
    def __call__(self, request) -> str:
        return "ok"


app = Hello.bind()
