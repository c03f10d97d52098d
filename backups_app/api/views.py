"""The API's endpoints. Each translates the request, calls one service (which checks the input with
the commands' sentences and writes the admin's LogEntry), and answers with the commands' --json shapes."""

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from backups_app import services
from backups_app.models import BackupJob, BackupStatus, BackupTrigger, Drill, Restore
from backups_app.selectors import (
    backup_to_dict,
    drill_to_dict,
    get_backup,
    get_drill,
    get_restore,
    list_backups,
    restore_to_dict,
)
from backups_app.services.restore import check_confirmation
from backups_app.views import archive_response

from . import serializers

ERRORS = {code: serializers.Error for code in (400, 401, 403, 404)}


def _url(request, name: str, pk: int) -> str:
    return request.build_absolute_uri(reverse(f"api:{name}-detail", args=[pk]))


def _backup(request, job) -> dict:
    return {**backup_to_dict(job), "url": _url(request, "backup", job.pk)}


def _restore(request, restore) -> dict:
    return {**restore_to_dict(restore), "url": _url(request, "restore", restore.pk)}


def _drill(request, drill) -> dict:
    return {**drill_to_dict(drill), "url": _url(request, "drill", drill.pk)}


class AnyAccept(BaseContentNegotiation):
    """A download is the archive whatever the client accepts (errors stay JSON)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):
        return parsers[0]


class BackupViewSet(viewsets.GenericViewSet):
    queryset = BackupJob.objects.none()  # only tells the schema what the ids are
    permission_actions = {
        "list": "view", "retrieve": "view", "verify": "view", "create": "add", "destroy": "delete",
        "restore": "restore", "download": "download", "drill": "restore",
    }

    @extend_schema(
        summary="List the backups, newest first",
        parameters=[
            OpenApiParameter("database", str, description="Only backups of this database alias."),
            OpenApiParameter("status", str, enum=BackupStatus.values, description="Only backups with this status."),
            OpenApiParameter("trigger", str, enum=BackupTrigger.values, description="Only backups started so."),
            OpenApiParameter("page", int, description="The page (50 backups a page)."),
        ],
        responses={200: serializers.Backup(many=True), **ERRORS},
    )
    def list(self, request):
        jobs = list_backups(
            database=request.query_params.get("database"), status=request.query_params.get("status"),
            trigger=request.query_params.get("trigger"),
        )
        page = self.paginate_queryset(jobs)
        return self.get_paginated_response([_backup(request, job) for job in page])

    @extend_schema(summary="Show a backup, with the restores made from it",
                   responses={200: serializers.BackupWithRestores, **ERRORS})
    def retrieve(self, request, pk):
        job = get_backup(pk)
        return Response({**_backup(request, job), "restores": [_restore(request, r) for r in job.restores.all()]})

    @extend_schema(
        summary="Queue a backup",
        description="Answers at once (202) with the new backup; a worker runs it. Poll its `url` until its "
        "status is completed or failed.",
        request=serializers.CreateBackupRequest, responses={202: serializers.Backup, **ERRORS},
    )
    def create(self, request):
        data = self.valid(serializers.CreateBackupRequest, request)
        job = services.request_backup(**data, acting_user=request.user)
        body = _backup(request, job)
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})

    @extend_schema(summary="Delete a backup: archive, manifest and record",
                   responses={204: None, **ERRORS})
    def destroy(self, request, pk):
        services.delete_backup(backup=get_backup(pk).pk, acting_user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Queue a restore of a backup",
        description="Replaces the target database's whole content, after a safety backup unless told not to "
        "(by swap or in place, see `strategy`); with `into`, makes a new database instead and touches nothing "
        "that exists. Answers at once (202) with the restore; poll its `url` until its status is completed or "
        "failed.",
        request=serializers.RestoreRequest, responses={202: serializers.Restore, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def restore(self, request, pk):
        data = self.valid(serializers.RestoreRequest, request)
        backup = get_backup(pk)
        database = data.get("database") or backup.database
        options = {name: data[name] for name in ("strategy", "jobs", "into", "tables")}
        if not data["into"]:  # a new database replaces nothing: only a restore over one is confirmed
            check_confirmation(database=database, typed=data["confirm_database"])
        restore = services.request_restore(
            backup=backup, database=database, safety_backup=data["safety_backup"],
            terminate_sessions=data["terminate_sessions"], trust_archive=data["trust_archive"],
            acting_user=request.user, **options,
        )
        body = _restore(request, restore)
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})

    @extend_schema(
        summary="Queue a restore drill of a backup",
        description="A worker restores the backup into a scratch database, counts every table's rows against "
        "the archive, runs BACKUP_DRILL_CHECKS and drops it. Answers at once (202) with the drill; poll its "
        "`url` until its status is passed or failed.",
        request=None, responses={202: serializers.Drill, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def drill(self, request, pk):
        drill = services.request_drill(backup=get_backup(pk), acting_user=request.user)
        body = _drill(request, drill)
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})

    @extend_schema(
        summary="Download a backup's archive",
        description="Streamed, with `Content-Length`, and the catalog's SHA-256 in `X-Checksum-SHA256` (hex) "
        "and `Repr-Digest` (RFC 9530).",
        responses={(200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY), **ERRORS},
    )
    @action(detail=True, methods=["get"], content_negotiation_class=AnyAccept)
    def download(self, request, pk):
        job = get_backup(pk)
        return archive_response(job, services.open_backup(backup=job, acting_user=request.user))

    @extend_schema(
        summary="Verify a backup's archive",
        description="Recomputes its checksum and reads it through; `ok` is false, with the `problem`, when "
        "it is damaged.",
        request=None, responses={200: serializers.Verification, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def verify(self, request, pk):
        return Response(services.verify_backup(backup=get_backup(pk), acting_user=request.user).to_dict())

    @staticmethod
    def valid(serializer_class, request) -> dict:
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


class RestoreViewSet(viewsets.GenericViewSet):
    queryset = Restore.objects.none()
    permission_actions = {"retrieve": "view", "undo": "restore"}

    @extend_schema(summary="Show a restore: its status, the step it is at, how it ran and whether it was undone",
                   responses={200: serializers.Restore, **ERRORS})
    def retrieve(self, request, pk):
        return Response(_restore(request, get_restore(pk)))

    @extend_schema(
        summary="Undo a restore by swap",
        description="Swaps back, in one step, the database the restore replaced (kept until cleanup drops it) "
        "and drops the restored one; answers when it is done (200) with the restore, `undone` set.",
        request=None, responses={200: serializers.Restore, 409: serializers.Error, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def undo(self, request, pk):
        restore = services.undo_restore(restore=get_restore(pk), acting_user=request.user)
        return Response(_restore(request, restore))


class DrillViewSet(viewsets.GenericViewSet):
    queryset = Drill.objects.none()
    permission_actions = {"retrieve": "view"}

    @extend_schema(summary="Show a restore drill: its status, the step it is at, and each table's row counts",
                   responses={200: serializers.Drill, **ERRORS})
    def retrieve(self, request, pk):
        return Response(_drill(request, get_drill(pk)))


class StatsView(APIView):
    permission_actions = {"get": "view"}

    @extend_schema(summary="Catalog totals and each database's newest successful backup",
                   responses={200: serializers.Stats, **ERRORS})
    def get(self, request):
        stats = services.backup_stats()
        for latest in stats["databases"].values():
            latest["url"] = _url(request, "backup", latest["id"])
        return Response(stats)


class CleanupView(APIView):
    permission_actions = {"post": "delete"}

    @extend_schema(
        summary="Delete the backups past the retention",
        description="Completed and failed backups older than the retention (never a database's newest "
        "completed one, nor one a restore reads) and partial files; with `dry_run`, only says what it would delete.",
        request=serializers.CleanupRequest, responses={200: serializers.Cleanup, **ERRORS},
    )
    def post(self, request):
        data = BackupViewSet.valid(serializers.CleanupRequest, request)
        days = data.get("retention_days")
        if data["dry_run"]:
            plan = services.plan_cleanup(retention_days=days)
        else:
            plan = services.cleanup_backups(retention_days=days, acting_user=request.user)
        return Response({"dry_run": data["dry_run"], **plan.to_dict()})
