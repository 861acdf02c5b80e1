"""The one list of onething's services: what each is called, the port its gRPC api listens on by
default, the nameko worker that consumes its events, the exchange it publishes to and its
database. config (ports, database names), the suite launcher, the tests and the tools read it here
instead of keeping their own lists."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Service:
    name: str
    port: int            # default gRPC port of the api role (ONETHING_<NAME>_PORT overrides it)
    worker: str          # "module:Class" of the worker role, run by `nameko run`
    proto_package: str   # the protobuf package of its api and events
    # the S3 buckets it uses and what it may do in them (its own S3 identity: infra/local.py)
    buckets: tuple = ()

    @property
    def exchange(self) -> str:
        """nameko publishes a service's events to the topic exchange `<name>.events`."""
        return f"{self.name}.events"

    @property
    def api_module(self) -> str:
        return f"services.{self.name}.api"


READ, WRITE = ("Read", "List"), ("Read", "List", "Write", "Tagging")
SERVICES = (
    Service("catalog", 50051, "services.catalog.worker:CatalogWorker", "onething.catalog.v1"),
    Service("intake", 50052, "services.intake.worker:IntakeWorker", "onething.intake.v1",
            (("materials", WRITE),)),
    Service("joint_review", 50053, "services.joint_review.worker:JointReviewWorker", "onething.joint_review.v1",
            (("results", WRITE),)),
    Service("elicense", 50054, "services.elicense.worker:ElicenseWorker", "onething.elicense.v1",
            (("results", WRITE),)),
    Service("delivery", 50055, "services.delivery.worker:DeliveryWorker", "onething.delivery.v1",
            (("results", READ),)),  # download links to the results: read only
    Service("evaluation", 50056, "services.evaluation.worker:EvaluationWorker", "onething.evaluation.v1"),
)

# a department's desk (one process per department and region, `python -m services.desk`): consumes
# its own task queue and answers on the bus only (protos/asyncapi/desk.yaml)
DESK = "services.desk"

BY_NAME = {s.name: s for s in SERVICES}
NAMES = tuple(s.name for s in SERVICES)


def service(name: str) -> Service:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"there is no service called {name!r}; the services are {', '.join(NAMES)}") from None


# The broker side of each party (infra/topology.py turns these into users, permissions and queues).
def broker_user(service_name: str) -> str:
    """The RabbitMQ user of one service (its api and worker share it)."""
    return f"svc-{service(service_name).name}"


# The desk protocol (protos/asyncapi/desk.yaml): a department's desk consumes its own task queue and
# publishes its opinions to DESK_EXCHANGE with its own routing key, as its own broker user.
DESK_EXCHANGE = "desk.opinions"


def desk_broker_user(department: str, region: str) -> str:
    return f"desk-{department}-{region}"


def desk_queue(department: str, region: str) -> str:
    """The durable queue a desk consumes; bound to joint_review.events by `task_assigned.<d>.<r>`."""
    return f"desk.{department}.{region}"


def opinion_routing_key(department: str, region: str, site: str) -> str:
    """Where a desk's opinion goes: `site` is the region code of the site that owns the case (the
    task says which), so an opinion from another site's desk finds its way back."""
    return f"opinion.{department}.{region}.{site}"
