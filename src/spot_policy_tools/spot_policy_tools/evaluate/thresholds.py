"""Why each threshold is where it is: what a deployable flat-ground Spot policy must do.

Set from the robot and its use, never from what any particular policy happens to achieve. The
shipped suites use these values (config/scenarios/*.yaml say where they differ and why);
docs/EVALUATION.md prints this table.
"""

from __future__ import annotations

#: threshold key -> (value on nominal flat ground, the reason).
REASONS: dict[str, tuple[float, str]] = {
    "survival_rate_min": (
        1.0,
        "A fall of a 32 kg robot damages it and what is around it. On ground and with loads it meets every day "
        "no fall is acceptable; harder scenarios state a lower rate with their reason. The Wilson interval beside "
        "each rate says how much a handful of trials proves.",
    ),
    "tracking_vxy_max_m_s": (
        0.15,
        "An operator or a planner steers by velocity. A sustained error of 0.15 m/s (15 % of a 1 m/s walk, about "
        "1 m off after 6 s) is as much as a path follower absorbs without visible weaving; a larger one makes the "
        "robot go somewhere it was not sent.",
    ),
    "tracking_wz_max_rad_s": (
        0.20,
        "0.2 rad/s is 11 deg/s of unwanted turning: beyond it an operator has to counter-steer all the time and a "
        "planner's heading controller saturates.",
    ),
    "tilt_max_deg": (
        25.0,
        "On flat ground a gait that rolls or pitches the body past 25 deg is halfway to the 60 deg fall criterion, "
        "swings a mounted payload and sweeps the body cameras off the ground ahead.",
    ),
    "base_height_min_m": (
        0.30,
        "Spot stands at about 0.43 m; a base that sags below 0.30 m is folding its legs (the fall criterion is "
        "0.25 m) and drags the belly over anything taller than a few centimetres.",
    ),
    "foot_slip_max_m_s": (
        0.15,
        "Feet in stance should stay put. Sliding faster than 0.15 m/s on a floor of friction 0.8 means the gait "
        "relies on sliding, which on a real floor wears the feet and loses traction unpredictably.",
    ),
    "action_rate_max": (
        0.5,
        "The joints follow targets through PD gains of 60/1.5. Raw actions changing by more than 0.5 per 20 ms "
        "step on average (0.1 rad of target at the 0.2 action scale) chatter the drives: heat, noise and wear "
        "the simulator does not show.",
    ),
    "torque_rms_max_nm": (
        30.0,
        "Spot's hips are limited to 45 N*m. A gait whose RMS torque over all joints exceeds two thirds of that "
        "leaves no reserve for a disturbance and heats the motors in continuous walking.",
    ),
    "fault_detect_max_s": (
        0.02,
        "A NaN must be caught on the control step it arrives (20 ms); a stale input within the node's input "
        "timeout (60 ms) plus one step, so the safety scenarios for stale inputs use 0.08 s.",
    ),
    "safe_state_max_s": (
        0.15,
        "Once the node stops commanding, the bridge's 0.1 s command timeout starts its safe behaviour; 0.15 s "
        "from the fault to the safe state is 15 cm of travel at 1 m/s.",
    ),
    "push_survived_min_m_s": (
        0.5,
        "People, doors and carts bump a robot that works among them; a shove that changes the body's velocity by "
        "0.5 m/s from any direction, standing or walking, must not bring it down.",
    ),
}
