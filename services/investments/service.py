"""The investments service. Its capabilities arrive with their own issues; for now it owns
its database and answers the gateway's health check."""

from nameko.rpc import rpc

from shared.mongo import MongoStore, Repository


class InvestmentsService:
    name = "investments"

    store: Repository = MongoStore(Repository)

    @rpc
    def ping(self) -> dict:
        return {"service": self.name, "mongo": self.store.ping()}
