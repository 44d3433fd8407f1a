"""Thin API views, one per operation: check the role, validate the input with the operation's serializer, call a
service (writes) or a selector (reads), serialize the result. Services' errors (LabelingError, LeaseError,
ImportFormatError) are turned into error bodies by `annotate.api.errors`, not caught here."""

from __future__ import annotations

from collections.abc import Mapping

from django.contrib.auth import get_user_model
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import GenericAPIView, ListAPIView
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import extensions, judgement_import, selectors, services
from annotate.api import selectors as api_selectors
from annotate.api import serializers as s
from annotate.api.errors import LockedOut
from annotate.api.parsers import JSONLinesParser, NDJSONParser
from annotate.api.throttling import AnonRateThrottle
from annotate.backends import RoleTokenAuthentication
from annotate.models import Project
from annotate.permissions import HasRole
from annotate.roles import RoleName, user_has_role, user_roles

User = get_user_model()

LABELER = HasRole.of(RoleName.LABELER)
RESEARCHER = HasRole.of(RoleName.RESEARCHER)
ADMIN = HasRole.of(RoleName.ADMIN)

LEASE_ERRORS = {
    409: OpenApiResponse(s.ErrorSerializer, description="The lease is not (or no longer) held by the caller."),
    422: OpenApiResponse(s.ErrorSerializer, description="The submission breaks a labeling rule."),
}


def project_or_404(slug: str, *, active_only: bool = False) -> Project:
    return get_object_or_404(Project, slug=slug, **({"is_active": True} if active_only else {}))


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --- auth ---------------------------------------------------------------------------------------------------


class TokenObtainView(ObtainAuthToken):
    """DRF's token view, behind django-axes: `AuthTokenSerializer` passes the request to `authenticate`, so axes
    counts failures per username and address and refuses a locked-out user even with the right password."""

    authentication_classes = []  # credentials in the body; a session (and its CSRF check) plays no part
    permission_classes = [AllowAny]
    throttle_classes = [AnonRateThrottle]  # DRF's view has none; axes limits guesses, this limits the rate
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(
        operation_id="auth_token_create",
        summary="Get your API token",
        description="Send a username and password; get the user's token (the same one until it is deleted). "
        "After AXES_FAILURE_LIMIT failed attempts the username is locked out from that address (429).",
        request=s.TokenCredentialsSerializer,
        responses={200: s.TokenSerializer},
    )
    def post(self, request, *args, **kwargs):
        try:
            return super().post(request, *args, **kwargs)
        except ValidationError:
            if getattr(request, "axes_locked_out", False):
                raise LockedOut() from None
            raise


class MeView(APIView):
    @extend_schema(operation_id="me_retrieve", summary="Who you are", responses=s.MeSerializer)
    def get(self, request):
        user = request.user
        token = api_selectors.user_token(user=user)
        data = {
            "id": user.pk,
            "username": user.username,
            "roles": [role.value for role in user_roles(user)],
            "token": {"hint": token.key[:6] + "…", "created": token.created} if token else None,
        }
        return Response(s.MeSerializer(data).data)


# --- projects -----------------------------------------------------------------------------------------------


class ProjectListView(APIView):
    permission_classes = [LABELER | RESEARCHER]

    @extend_schema(
        operation_id="projects_list",
        summary="Projects",
        description="Researchers see every project; labelers see the active ones. Callers with the labeler role "
        "also get their own queue counts (`queue`) and live lease (`live_assignment`) on active projects.",
        responses=s.ProjectSerializer(many=True),
    )
    def get(self, request):
        user = request.user
        queues = {}
        if user_has_role(user, RoleName.LABELER):
            queues = {queue.project.pk: queue for queue in selectors.labeler_queues(labeler=user)}
        if user_has_role(user, RoleName.RESEARCHER):
            projects = list(api_selectors.project_list())
        else:
            projects = [queue.project for queue in queues.values()]
        return Response(s.ProjectSerializer(projects, many=True, context={"queues": queues}).data)


class ProjectDetailView(APIView):
    permission_classes = [RESEARCHER]

    @extend_schema(
        operation_id="projects_retrieve", summary="A project's overview", responses=s.ProjectOverviewSerializer
    )
    def get(self, request, slug: str):
        overview = selectors.project_overview(project=project_or_404(slug))
        return Response(s.ProjectOverviewSerializer(overview).data)


class PromptImportView(APIView):
    permission_classes = [ADMIN]
    parser_classes = [MultiPartParser, JSONLinesParser, NDJSONParser]

    @extend_schema(
        operation_id="projects_prompts_import",
        summary="Import prompts (all or nothing)",
        description="A JSONL file as a multipart upload (`file`) or as the raw body (`application/jsonl` or "
        "`application/x-ndjson`, with `?filename=`). The whole file is checked first: any problem gives 400 with "
        "every problem (line, field, message) and nothing is imported. Re-importing adds no duplicates.",
        request={
            "multipart/form-data": s.PromptUploadSerializer,
            "application/jsonl": OpenApiTypes.BINARY,
            "application/x-ndjson": OpenApiTypes.BINARY,
        },
        parameters=[
            OpenApiParameter("filename", str, description="The name recorded for a raw-body upload.", required=False)
        ],
        responses={201: s.ImportResultSerializer},
    )
    def post(self, request, slug: str):
        project = project_or_404(slug)
        if isinstance(request.data, bytes):
            data, filename = request.data, request.query_params.get("filename") or "upload.jsonl"
        else:
            upload = _valid(s.PromptUploadSerializer, request.data)["file"]
            data, filename = upload.read(), upload.name
        result = services.prompts_import(project=project, data=data, filename=filename, imported_by=request.user)
        return Response(s.ImportResultSerializer(result).data, status=status.HTTP_201_CREATED)


class UploadNegotiation(DefaultContentNegotiation):
    """The answer is JSON whatever `?format=` says: on an upload, `format` names the file's shape, not the
    response's (DRF would otherwise take it as its format override and answer 404 for `hh`)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class JudgementImportView(APIView):
    content_negotiation_class = UploadNegotiation
    permission_classes = [RESEARCHER]
    parser_classes = [MultiPartParser, JSONLinesParser, NDJSONParser]

    @extend_schema(
        operation_id="projects_judgements_import",
        summary="Import a dataset with its judgements (all or nothing)",
        description="TRL preference rows, HH transcripts, Open-Assistant trees, Chatbot Arena battles or rated "
        "completions (`format`), as a multipart upload (`file`, `format`, `open_tasks`) or as the raw body "
        "(`application/jsonl`, with `?format=&open_tasks=&filename=`). Imported judgements keep their source (file, "
        "hash, row) instead of a labeler. Any bad line gives 400 with every problem (line, field, message) and "
        "nothing is imported.",
        request={
            "multipart/form-data": s.JudgementUploadSerializer,
            "application/jsonl": OpenApiTypes.BINARY,
            "application/x-ndjson": OpenApiTypes.BINARY,
        },
        parameters=[s.JudgementImportQuerySerializer],
        responses={201: s.JudgementImportResultSerializer},
    )
    def post(self, request, slug: str):
        project = project_or_404(slug)
        if isinstance(request.data, bytes):
            options = _valid(s.JudgementImportQuerySerializer, request.query_params.dict())
            lines, filename = request.data.splitlines(keepends=True), options["filename"]
        else:
            options = _valid(s.JudgementUploadSerializer, request.data)
            lines, filename = options["file"], options["file"].name  # an upload reads line by line
        result = judgement_import.judgements_import(
            project=project,
            lines=lines,
            filename=filename,
            format=options["format"],
            open_tasks=options["open_tasks"],
            imported_by=request.user,
        )
        return Response(s.JudgementImportResultSerializer(result).data, status=status.HTTP_201_CREATED)


# --- tasks --------------------------------------------------------------------------------------------------


class TaskListView(ListAPIView):
    permission_classes = [RESEARCHER]
    serializer_class = s.TaskSerializer

    @extend_schema(operation_id="projects_tasks_list", summary="A project's tasks", parameters=[s.TaskFilterSerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        filters = _valid(s.TaskFilterSerializer, self.request.query_params.dict())
        return api_selectors.task_list(
            project=project_or_404(self.kwargs["slug"]),
            kind=filters.get("kind"),
            is_gold=filters.get("is_gold"),
            is_active=filters.get("is_active"),
            is_open=filters.get("open"),
            min_priority=filters.get("min_priority"),
        )


class TaskDetailView(APIView):
    permission_classes = [RESEARCHER]

    @extend_schema(
        operation_id="tasks_retrieve",
        summary="A task with its conversation and candidates",
        responses=s.TaskDetailSerializer,
    )
    def get(self, request, task_id: int):
        task = api_selectors.task_detail(task_id=task_id)
        if task is None:
            raise NotFound("No task with this id.")
        conversation = selectors.conversation_path(message=task.anchor)
        scores = extensions.candidate_scores(
            project=task.project, message_ids=[row.message_id for row in task.task_candidates.all()]
        )
        context = {"conversation": conversation, "reward_scores": scores.scores}
        return Response(s.TaskDetailSerializer(task, context=context).data)


class TaskPriorityView(APIView):
    permission_classes = [ADMIN]

    @extend_schema(
        operation_id="tasks_priority_update",
        summary="Set a task's priority",
        request=s.TaskPrioritySerializer,
        responses=s.TaskSerializer,
    )
    def patch(self, request, task_id: int):
        priority = _valid(s.TaskPrioritySerializer, request.data)["priority"]
        if not services.tasks_set_priority(priorities={task_id: priority}):
            raise NotFound("No task with this id.")
        return Response(s.TaskSerializer(api_selectors.task_detail(task_id=task_id)).data)


class TaskPriorityBulkView(APIView):
    permission_classes = [ADMIN]

    @extend_schema(
        operation_id="projects_tasks_priority_update",
        summary="Set many tasks' priorities",
        description="All or nothing: every task must belong to the project.",
        request=s.TaskPriorityBulkSerializer,
        responses=s.PriorityResultSerializer,
    )
    def post(self, request, slug: str):
        project = project_or_404(slug)
        items = _valid(s.TaskPriorityBulkSerializer, request.data)["priorities"]
        priorities = {item["task"]: item["priority"] for item in items}
        found = api_selectors.task_ids_in_project(project=project, task_ids=list(priorities))
        unknown = sorted(set(priorities) - found)
        if unknown:
            shown = ", ".join(str(task_id) for task_id in unknown[:20]) + (" …" if len(unknown) > 20 else "")
            raise ValidationError({"priorities": [f"Not tasks of this project: {shown}."]})
        updated = services.tasks_set_priority(priorities=priorities)
        return Response(s.PriorityResultSerializer({"updated": updated}).data)


# --- judgements ---------------------------------------------------------------------------------------------


class AnnotationListView(GenericAPIView):
    permission_classes = [LABELER | RESEARCHER]

    @extend_schema(
        operation_id="projects_annotations_list",
        summary="A project's judgements",
        description="Every kind in one list, oldest first; each item has `kind` and that kind's fields. "
        "Researchers see everyone's judgements; a labeler sees only their own (`labeler` is ignored).",
        parameters=[s.AnnotationFilterSerializer],
        responses=s.AnnotationListSerializer,
    )
    def get(self, request, slug: str):
        project = project_or_404(slug)
        filters = _valid(s.AnnotationFilterSerializer, request.query_params.dict())
        labeler_id = filters.get("labeler")
        if not user_has_role(request.user, RoleName.RESEARCHER):
            labeler_id = request.user.pk
        index = api_selectors.annotation_index(
            project=project,
            kind=filters.get("kind"),
            labeler_id=labeler_id,
            created_after=filters.get("created_after"),
            created_before=filters.get("created_before"),
            include_discarded=filters["include_discarded"],
        )
        page = self.paginate_queryset(index)
        return self.get_paginated_response([s.annotation_data(a) for a in api_selectors.annotations_for_page(page)])


# --- labeling -----------------------------------------------------------------------------------------------


# Labelers' hot path: the token's query also reads the user's roles (a session is read as pages read it).
LABELING_AUTHENTICATION = [RoleTokenAuthentication, SessionAuthentication]


class LeaseView(APIView):
    authentication_classes = LABELING_AUTHENTICATION
    permission_classes = [LABELER]

    @extend_schema(
        operation_id="projects_lease_create",
        summary="Lease your next task",
        description="Your live lease in the project if you hold one, else the next task for you (kind mix, "
        "priority, overlap: see README). 204 when nothing is left for you.",
        request=s.LeaseKindsSerializer,
        responses={200: s.LeaseSerializer, 204: OpenApiResponse(description="Nothing left to label for you.")},
    )
    def post(self, request, slug: str):
        project = selectors.active_project(slug=slug)
        if project is None:
            raise Http404("No Project matches the given query.")
        kinds = _valid(s.LeaseKindsSerializer, request.data).get("kinds") or None
        assignment = services.task_lease_next(labeler=request.user, project=project, kinds=kinds)
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(s.LeaseSerializer(selectors.labeling_task(assignment=assignment)).data)


class SubmitView(APIView):
    authentication_classes = LABELING_AUTHENTICATION
    permission_classes = [LABELER]

    @extend_schema(
        operation_id="assignments_submit",
        summary="Submit your judgement",
        description="The body depends on the task's kind. `client_token` makes a repeat harmless: the same token "
        "again returns the first judgement (200) instead of storing a second (201).",
        request=s.SubmitRequestSerializer,
        responses={201: s.SubmissionSerializer, 200: s.SubmissionSerializer, **LEASE_ERRORS},
    )
    def post(self, request, assignment_id: int):
        token = request.data.get("client_token") if isinstance(request.data, Mapping) else None
        target = selectors.submission_target(
            labeler=request.user, assignment_id=assignment_id, client_token=token if isinstance(token, str) else ""
        )
        if target is None:
            raise services.LeaseError("This task is not leased to you.")
        kind = target.task.kind
        data = _valid(s.SUBMIT_IN[kind], request.data)
        client_token, time_spent_ms = data.pop("client_token"), data.pop("time_spent_ms", None)
        submission = services.submission_submit(
            labeler=request.user,
            assignment_id=target.pk,
            kind=kind,
            data=data,
            client_token=client_token,
            time_spent_ms=time_spent_ms,
            target=target,
        )
        return Response(
            s.SubmissionSerializer(submission).data,
            status=status.HTTP_201_CREATED if submission.created else status.HTTP_200_OK,
        )


class SkipView(APIView):
    authentication_classes = LABELING_AUTHENTICATION
    permission_classes = [LABELER]

    @extend_schema(
        operation_id="assignments_skip",
        summary="Skip a task",
        description="The task goes back to the pool for others; you will not be served it again.",
        request=s.SkipSerializer,
        responses={200: s.AssignmentSerializer, **LEASE_ERRORS},
    )
    def post(self, request, assignment_id: int):
        data = _valid(s.SkipSerializer, request.data)
        assignment = services.task_skip(
            labeler=request.user, assignment_id=assignment_id, reason=data["reason"], note=data["note"]
        )
        return Response(s.AssignmentSerializer(assignment).data)


# --- users --------------------------------------------------------------------------------------------------


class UserListView(ListAPIView):
    permission_classes = [ADMIN]
    serializer_class = s.UserSerializer

    @extend_schema(operation_id="users_list", summary="Users and their roles")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return api_selectors.user_list()


class UserRolesView(APIView):
    permission_classes = [ADMIN]

    @extend_schema(
        operation_id="users_roles_update",
        summary="Set a user's roles",
        description="Exactly these roles (an empty list takes every role away). Admins are staff.",
        request=s.RolesSerializer,
        responses=s.UserSerializer,
    )
    def put(self, request, user_id: int):
        user = get_object_or_404(User, pk=user_id)
        roles = _valid(s.RolesSerializer, request.data)["roles"]
        if user == request.user and RoleName.ADMIN not in roles:
            raise ValidationError({"roles": ["You cannot take away your own admin role."]})
        services.user_set_roles(user=user, roles=roles)
        return Response(s.UserSerializer(api_selectors.user_list().get(pk=user.pk)).data)


class UserDeactivateView(APIView):
    permission_classes = [ADMIN]

    @extend_schema(
        operation_id="users_deactivate",
        summary="Deactivate a labeler",
        description="Closes the account and releases their live leases; with `requeue`, their judgements (in "
        "`project`, or everywhere) are kept but discarded, and the tasks reopen for other labelers.",
        request=s.DeactivateSerializer,
        responses=s.DeactivationResultSerializer,
    )
    def post(self, request, user_id: int):
        user = get_object_or_404(User, pk=user_id)
        data = _valid(s.DeactivateSerializer, request.data)
        if user == request.user:
            raise ValidationError("You cannot deactivate your own account.")
        result = services.labeler_deactivate(labeler=user, requeue=data["requeue"], project=data["project"])
        return Response(s.DeactivationResultSerializer(result).data)


# --- anything else under /api/ ------------------------------------------------------------------------------


class NotFoundView(APIView):
    """Any other address under /api/: a 404 with the API's error body, not an HTML page."""

    permission_classes = [AllowAny]

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        raise NotFound("There is no API endpoint at this address.")

    post = put = patch = delete = get
