"""camtopo: activity topology of camera networks by exclusion, as a Kafka stream pipeline.

The folders are the layers, from the pure algorithm outwards (docs/architecture.md, "Layout"):

* ``core/``: the algorithm, with no I/O (padding, exclusion counts, C', adjacency, RLE).
* ``settings/``: typed ``CAMTOPO_*`` settings; ``schemas/``: the versioned Avro and JSON Schemas.
* ``formats/``: the wire and file formats (Avro framing of the Kafka records, trace readers).
* ``estimate.py``: the estimator offline over a trace; ``simulation/``: cameras with ground truth.
* ``evaluation/``: scores against the truth, the peer baseline, topology pictures.
* ``operations/``: the local Kafka/Redis stack, the lag exporter, the demo (ships ``infra/``).
* ``cli.py``, ``connections.py`` (every Kafka/Redis/registry client), ``errors.py``.

The streaming services sit beside it: ``producers/``, ``processors/``, ``topology_store/``.
"""
