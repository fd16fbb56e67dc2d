"""Wire and file formats: the Avro framing of every Kafka record (schema registry or the schema
files' fixed ids) and the readers of occupancy traces (JSON Lines or Avro container files)."""
