"""Running camtopo: the local Kafka/Redis/registry stack, the consumer-lag exporter, the demo.

``infra`` is a symlink to the checkout's infra/ (a plain folder in the wheel): the scripts,
broker config and alert rules these modules run ship as package data (pyproject.toml).
"""
