"""Generated protobuf modules for protocol_v8 (tools/gen_protos.py); their descriptors live in POOL."""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
