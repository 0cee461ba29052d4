"""The registry's errors cross RPC as themselves: each is registered with nameko's
remote-error registry, so an error a service raises is re-raised as the same type in its
caller (the gateway, which maps it to HTTP), with its `errors` and `extra`. Imported by
every RPC entrypoint (shared/entrypoints.py) and by the gateway's clients."""

from nameko.exceptions import deserialize_to_instance

from shared import errors

REMOTE_ERRORS = [
    cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.RegistryError)
]
for error_class in REMOTE_ERRORS:
    deserialize_to_instance(error_class)
