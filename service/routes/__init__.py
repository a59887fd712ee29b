"""HTTP routes, one module per area; ``routers`` lists them in mounting order."""

from __future__ import annotations

from fastapi import APIRouter

from service.routes import admin, interactions, ops, recommend

routers: tuple[APIRouter, ...] = (recommend.router, interactions.router, ops.router, admin.router)

__all__ = ["routers"]
