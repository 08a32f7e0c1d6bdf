"""Load test for the hello app, run before promoting a release (and during a deploy).

    locust -f examples/hello/loadtest/locustfile.py --headless -u 20 -r 10 -t 30s \
        --host http://127.1.255.254:8080

Every response must be a 200 whose first line names a release; anything else fails.
"""

from locust import HttpUser, constant, task


class HelloUser(HttpUser):
    wait_time = constant(0.05)

    @task
    def index(self) -> None:
        with self.client.get("/", catch_response=True) as response:
            first = response.text.split("\n", 1)[0] if response.text else ""
            if response.status_code != 200 or not first.startswith("release "):
                response.failure(f"{response.status_code}: {first!r}")
