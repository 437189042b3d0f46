"""The policy core: what a deployment reads from a run folder and what one control step does.

No ROS imports here (a test enforces it): the contract, reading Isaac Lab runs, the observation,
the safety rules, the controller, ONNX inference, command profiles and the teleop mapping.
"""
