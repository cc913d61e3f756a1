"""``/notifications``: e-mail and webhook channels for failed jobs, a test send, the delivery log. Parse, call the use case, return."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query

from api.deps import Gateway, Hosts
from api.models_notifications import ChannelCreated, ChannelOut, ChannelRequest, NotificationAttempt
from api.responses import errors
from api.security import CurrentUser
from api.usecases import notifications as usecase

router = APIRouter(tags=["notifications"])
ChannelId = Path(..., max_length=64, description="The channel's id (from POST /notifications/channels)")


@router.post("/notifications/channels", response_model=ChannelCreated, status_code=201, responses=errors(400, 403, 404, 409),
             summary="A channel: e-mail or webhook, for failed, crashed or timed-out jobs (of a user, host or sweep)")
async def create_channel(body: ChannelRequest, gateway: Gateway, hosts: Hosts, user: CurrentUser) -> ChannelCreated:
    return await usecase.create(gateway, body, user, hosts)


@router.get("/notifications/channels", response_model=list[ChannelOut], responses=errors(), summary="The channels (a user: their own)")
async def list_channels(gateway: Gateway, user: CurrentUser) -> list[ChannelOut]:
    return await usecase.list_all(gateway, user)


@router.get("/notifications/channels/{channel_id}", response_model=ChannelOut, responses=errors(404), summary="One channel")
async def read_channel(gateway: Gateway, user: CurrentUser, channel_id: str = ChannelId) -> ChannelOut:
    return await usecase.read(gateway, channel_id, user)


@router.delete("/notifications/channels/{channel_id}", response_model=ChannelOut, responses=errors(404),
               summary="Delete a channel (its Prefect automation and block); its delivery records stay")
async def delete_channel(gateway: Gateway, user: CurrentUser, channel_id: str = ChannelId) -> ChannelOut:
    return await usecase.delete(gateway, channel_id, user)


@router.post("/notifications/channels/{channel_id}/test", response_model=NotificationAttempt, responses=errors(404),
             summary="Send a test notice now, through the channel's own block; the answer is the attempt's record")
async def test_channel(gateway: Gateway, user: CurrentUser, channel_id: str = ChannelId) -> NotificationAttempt:
    return await usecase.test(gateway, channel_id, user)


@router.get("/notifications/deliveries", response_model=list[NotificationAttempt], responses=errors(404),
            summary="The delivery log, newest first: every e-mail and webhook attempt with its outcome")
async def deliveries(gateway: Gateway, user: CurrentUser, job_id: str | None = Query(None, max_length=64),
                     channel_id: str | None = Query(None, max_length=64), limit: int = Query(50, ge=1, le=200)) -> list[NotificationAttempt]:
    return await usecase.deliveries(gateway, user, job_id, channel_id, limit)
