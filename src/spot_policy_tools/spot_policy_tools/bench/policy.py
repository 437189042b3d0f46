"""Bench sections of the policy node.

- ``policy``: one controller step (observation + inference + action) vs a bare ONNX Runtime call.
- ``dds``: joint_states -> joint_command through the policy node (input-triggered) vs a bare rclpy
  echo node's round trip, same message and QoS, both as separate processes on loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time

import numpy as np

from spot_policy.core import contract, paths
from spot_policy.core.stats import summarize
from spot_policy.ros.dds_isolation import low_latency_environment
from spot_policy_tools.bench.common import Row, Section, interleaved


# ---------------------------------------------------------------------------- policy step
def bench_policy_step(args: argparse.Namespace) -> list[Row]:
    from spot_policy.core.controller import ControllerConfig, Mode, PolicyController
    from spot_policy.core.loader import load_policy

    loaded = load_policy(
        args.policy, providers=["cpu"], policies_dir=paths.config_dir() / "policies", log=lambda m: None
    )
    spec, model = loaded.spec, loaded.model
    controller = PolicyController(spec, model, ControllerConfig(soft_start_s=0.0))
    controller.joint_state(contract.ISAAC_JOINT_ORDER, spec.default_joint_pos, np.zeros(12), 0.0)
    controller.imu((0.0, 0.0, 0.0, 1.0), (0.0, 0.0, 0.0), 0.0)
    controller.odom((0.0, 0.0, 0.0), 0.0)
    controller.cmd_vel(0.5, 0.0, 0.0, 0.0)
    ok, message = controller.request(Mode.WALK, 0.0)
    if not ok:
        raise RuntimeError(message)
    for _ in range(200):  # walking: the observation holds the policy's own last actions
        controller.step(0.0)
    # The baseline sees the same input as the step (it was fed zeros: inference time may depend on
    # the values), so the two differ only in what the step adds.
    observation = controller.last_observation.reshape(1, -1).astype(np.float32)
    session, feed = model.session, {model.input_names[0]: observation}
    outputs = [model.output_names[0]]

    def bare() -> None:
        session.run(outputs, feed)

    def step() -> None:
        controller.step(0.0)

    bare_ns, step_ns = interleaved(bare, step, args.iterations, block=200)
    b, s = summarize(bare_ns / 1e3), summarize(step_ns / 1e3)
    ok = s["median"] <= 1.5 * b["median"] and s["p99"] <= 200.0
    return [
        Row(
            "policy",
            f"policy step, {spec.obs_dim}->{spec.action_dim} MLP ({model.provider}, 1 thread)",
            "us",
            s["median"],
            s["p99"],
            "bare ONNX Runtime call",
            b["median"],
            b["p99"],
            "median <= 1.5x baseline, p99 <= 200 us",
            ok,
        )
    ]


# ---------------------------------------------------------------------------- DDS round trip
ECHO_IN, ECHO_OUT = "bench_echo/joint_states", "bench_echo/joint_command"


def run_echo_node() -> None:
    """The baseline: a bare rclpy node that republishes each joint_states as a joint_command."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState

    from spot_policy.ros.policy_node import COMMAND_QOS

    rclpy.init()
    node = rclpy.create_node("bench_echo")
    pub = node.create_publisher(JointState, ECHO_OUT, COMMAND_QOS)

    def echo(msg: JointState) -> None:
        out = JointState()
        out.header.stamp = node.get_clock().now().to_msg()
        out.name = list(msg.name)
        out.position = list(msg.position)
        out.velocity = [0.0] * len(msg.name)
        out.effort = [0.0] * len(msg.name)
        pub.publish(out)

    node.create_subscription(JointState, ECHO_IN, echo, qos_profile_sensor_data)
    with contextlib.suppress(KeyboardInterrupt, Exception):
        rclpy.spin(node)


def bench_dds(args: argparse.Namespace) -> list[Row]:
    from spot_policy.ros.dds_isolation import claim_domain

    domain = claim_domain()
    import rclpy
    from nav_msgs.msg import Odometry
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Imu, JointState
    from std_srvs.srv import Trigger

    from spot_policy.ros.policy_node import COMMAND_QOS
    from spot_policy.ros.polling import PolledGroup, Waiter

    env = low_latency_environment(dict(os.environ))
    procs = [
        subprocess.Popen([sys.executable, "-m", "spot_policy_tools.bench.policy", "echo"], env=env),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "spot_policy.ros.policy_node",
                "--ros-args",
                "--log-level",
                "warn",
                "-p",
                f"policy:={args.policy}",
                "-p",
                "trigger:=input",
                "-p",
                "providers:=[cpu]",
                "-p",
                "input_timeout_s:=5.0",  # the node idles while the echo block runs
                "-p",
                "soft_start_s:=0.0",
            ],
            env=env,
        ),
    ]
    context = rclpy.Context()  # its own, so a caller's rclpy context is left alone
    rclpy.init(context=context)
    node = rclpy.create_node("bench_dds", context=context)
    pubs = {
        "policy": node.create_publisher(JointState, contract.TOPIC_JOINT_STATES, qos_profile_sensor_data),
        "echo": node.create_publisher(JointState, ECHO_IN, qos_profile_sensor_data),
    }
    imu_pub = node.create_publisher(Imu, contract.TOPIC_IMU, qos_profile_sensor_data)
    odom_pub = node.create_publisher(Odometry, contract.TOPIC_ODOM, qos_profile_sensor_data)
    # Replies are waited for in this thread (no executor, no thread hand-off): the harness adds
    # the same, as little as it can, to both round trips.
    subs = {
        target: node.create_subscription(
            JointState, topic, lambda _data: None, COMMAND_QOS, raw=True, callback_group=PolledGroup()
        )
        for target, topic in (("policy", contract.TOPIC_JOINT_COMMAND), ("echo", ECHO_OUT))
    }
    replies = {target: Waiter(sub, context) for target, sub in subs.items()}
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    js = JointState()
    js.name = list(contract.SDK_JOINT_ORDER)
    q = {"fl": 0.1, "hl": 0.1, "fr": -0.1, "hr": -0.1}
    js.position = [q[j[:2]] if j.endswith("hx") else (0.9 if j[0] == "f" else 1.1) if j.endswith("hy") else -1.5
                   for j in js.name]  # fmt: skip
    js.velocity = [0.0] * 12
    js.effort = [0.0] * 12
    imu, odom = Imu(), Odometry()
    imu.orientation.w = 1.0
    counter = [0]

    def ping(target: str) -> int | None:
        counter[0] += 1
        stamp = node.get_clock().now().to_msg()
        if target == "policy":
            imu.header.stamp = odom.header.stamp = stamp
            imu_pub.publish(imu)
            odom_pub.publish(odom)
        js.header.stamp = stamp
        t0 = time.perf_counter_ns()
        pubs[target].publish(js)
        if replies[target].take(0.5) is None:
            return None
        return time.perf_counter_ns() - t0

    try:
        end = time.monotonic() + 30
        while not (
            all(p.get_subscription_count() > 0 for p in pubs.values())
            and all(s.get_publisher_count() > 0 for s in subs.values())
        ):
            if time.monotonic() > end or any(p.poll() is not None for p in procs):
                raise RuntimeError("the policy node or the echo node did not come up (see their output above)")
            time.sleep(0.05)
        client = node.create_client(Trigger, "/policy_node/walk")
        if not client.wait_for_service(timeout_sec=20):
            raise RuntimeError("/policy_node/walk did not appear")
        for _ in range(20):
            ping("echo")
            ping("policy")
        future = client.call_async(Trigger.Request())
        executor.spin_until_future_complete(future, timeout_sec=20)
        if not future.done():
            raise RuntimeError("/policy_node/walk did not answer")
        if not future.result().success:
            raise RuntimeError(f"policy node refused walk: {future.result().message}")
        samples: dict[str, list[int]] = {"echo": [], "policy": []}
        lost = {"echo": 0, "policy": 0}
        for _ in range(50):  # warm-up
            ping("echo")
            ping("policy")
        while len(samples["policy"]) < args.pings:
            for target in ("echo", "policy"):
                for _ in range(50):
                    dt = ping(target)
                    if dt is None:
                        lost[target] += 1
                    else:
                        samples[target].append(dt)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    e = summarize(np.array(samples["echo"]) / 1e6)
    s = summarize(np.array(samples["policy"]) / 1e6)
    ok = s["median"] <= 1.2 * e["median"] and s["p99"] <= 2.0 and not lost["policy"]
    return [
        Row(
            "dds",
            f"joint_states -> joint_command via policy node (input trigger, domain {domain}, lost {lost['policy']})",
            "ms",
            s["median"],
            s["p99"],
            f"rclpy echo node round trip (lost {lost['echo']})",
            e["median"],
            e["p99"],
            "median <= 1.2x baseline, p99 <= 2 ms",
            ok,
        )
    ]


SECTIONS: dict[str, Section] = {"policy": bench_policy_step, "dds": bench_dds}


if __name__ == "__main__":
    if sys.argv[1:] == ["echo"]:
        run_echo_node()
    else:
        print("usage: python -m spot_policy_tools.bench.policy echo   (the DDS baseline node; use `spot-policy bench`)")
        sys.exit(2)
