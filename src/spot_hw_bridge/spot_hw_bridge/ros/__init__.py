"""The robot bridge node: the core behind the topic contract."""
