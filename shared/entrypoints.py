"""nameko's RPC entrypoint, told that a RegistryError (not found, conflict, invalid
input...) is an answer to the caller, not a failure of the service: nameko then logs
it as expected instead of as an error."""

from nameko.rpc import Rpc

from shared.errors import RegistryError

rpc = Rpc.decorator(expected_exceptions=RegistryError)
