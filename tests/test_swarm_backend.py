"""The Swarm backend's pure parts: the service a sandbox becomes, and what a task says."""

from __future__ import annotations

from edgelambda.containers import ContainerSpec
from edgelambda.swarm_backend import (
    has_ended,
    has_run,
    is_lost,
    live_nodes,
    service_spec,
    task_address,
    task_exit,
    was_killed,
)

SPEC = ContainerSpec(
    name="st-fn-1",
    image="fn:1",
    entrypoint=None,
    command=("app.handler",),
    env={"A": "1"},
    labels={"edgelambda.stack": "st"},
    network="overlay-net",
    memory_mb=256,
    cpus=1.5,
    extra_hosts=("runtime-secret:10.0.0.2",),
    placement=("node.labels.zone == edge-a",),
)


def test_a_sandbox_service_is_as_hardened_as_a_container() -> None:
    template = service_spec(SPEC)

    container = template["ContainerSpec"]
    assert (container["User"], container["ReadOnly"]) == ("993:990", True)
    assert container["CapabilityDrop"] == ["ALL"]
    assert container["Args"] == ["app.handler"]
    assert "Command" not in container  # the image's own entrypoint
    assert container["Hosts"] == ["10.0.0.2 runtime-secret"]  # swarmkit's "IP name" order
    assert container["StopGracePeriod"] == 100_000_000  # ns: killed at once when removed
    (tmp,) = container["Mounts"]
    assert (tmp["Type"], tmp["Target"], tmp["TmpfsOptions"]["SizeBytes"]) == (
        "tmpfs",
        "/tmp",
        512 * 2**20,
    )
    limits = template["Resources"]["Limits"]
    assert limits == {"MemoryBytes": 256 * 2**20, "NanoCPUs": 1_500_000_000, "Pids": 1024}
    assert template["Resources"]["Reservations"] == {"MemoryBytes": 256 * 2**20}
    assert template["RestartPolicy"] == {"Condition": "none"}
    assert template["Placement"] == {"Constraints": ["node.labels.zone == edge-a"]}
    assert template["Networks"] == [{"Target": "overlay-net"}]


def task(
    state: str, *, exit_code: int | None = None, address: str | None = None, node: str = ""
) -> dict[str, object]:
    status: dict[str, object] = {"State": state}
    if exit_code is not None:
        status["ContainerStatus"] = {"ContainerID": "c1", "ExitCode": exit_code}
    attachments = [
        {"Network": {"Spec": {"Name": "ingress"}}, "Addresses": ["10.255.0.9/16"]},
        {"Network": {"Spec": {"Name": "overlay-net"}}, "Addresses": [address] if address else []},
    ]
    return {"Status": status, "NetworksAttachments": attachments, "NodeID": node}


def test_a_task_s_address_is_its_own_on_the_sandbox_network() -> None:
    assert task_address(task("running", address="10.0.1.3/24"), "overlay-net") == "10.0.1.3"
    assert task_address(task("starting"), "overlay-net") is None
    assert task_address(task("running", address="10.0.1.3/24"), "other") is None


def test_a_task_has_run_once_it_runs_or_ended_with_an_exit_code() -> None:
    assert has_run(task("running"))
    assert has_run(task("failed", exit_code=3))  # it exited at once: exits() says so
    assert not has_run(task("rejected"))  # it never ran (no such image, no node fits)
    assert not has_run(task("preparing"))


def test_an_ended_task_is_an_exit_of_its_service() -> None:
    exit = task_exit("svc1", task("failed", exit_code=137))
    assert (exit.container_id, exit.exit_code) == ("svc1", 137)
    assert task_exit("svc1", task("orphaned")).exit_code == -1  # its node is gone


def test_a_task_on_a_node_that_is_down_or_gone_is_lost_and_ended() -> None:
    nodes = [
        {"ID": "n1", "Status": {"State": "ready"}},
        {"ID": "n2", "Status": {"State": "down"}},
        {"ID": "n3", "Status": {"State": "disconnected"}},
    ]
    live = live_nodes(nodes)
    assert live == {"n1", "n3"}  # disconnected (or unknown) for a moment is not gone

    for node in ("n1", "n3"):
        assert not is_lost(task("running", node=node), live)
        assert not has_ended(task("running", node=node), live)
    for node in ("n2", "removed-from-the-swarm"):
        assert is_lost(task("running", node=node), live)
        assert has_ended(task("running", node=node), live)
    assert not is_lost(task("pending"), live)  # not placed yet: no node to lose
    assert has_ended(task("complete", exit_code=0, node="n1"), live)
    assert task_exit("svc", task("running", node="n2")).exit_code == -1


def test_a_task_killed_by_sigkill_may_have_been_oom_killed() -> None:
    assert was_killed(task("failed", exit_code=137))
    assert not was_killed(task("failed", exit_code=1))
    assert not was_killed(task("running", node="n1"))
    oom = task_exit("svc", task("failed", exit_code=137), is_oom=True)
    assert (oom.exit_code, oom.is_oom) == (137, True)
