"""The sim bridge node: the core behind the topic contract."""
