"""The SQS transport (moto's server) and the Lambda transport (a loopback stand-in for the Invoke API)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import boto3

from tests.dispatcher.test_end_to_end import HELLO
from tests.support.aws import AWS_ENV, lambda_stand_in, moto_server
from tests.support.stack import REPO, running_stack, wait_for


def test_sqs_carries_task_ids_only(database_url: str, tmp_path: Path) -> None:
    with moto_server() as endpoint:
        sqs = boto3.client(
            "sqs",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        queue_url = sqs.create_queue(QueueName="trace-ecs_python")["QueueUrl"]
        env = {
            **AWS_ENV,
            "TRACE_TRANSPORT": "sqs",
            "TRACE_AWS_ENDPOINT_URL": endpoint,
            "TRACE_SQS_QUEUE_URL_PREFIX": queue_url.removesuffix("ecs_python"),
            "TRACE_SQS_WAIT_S": "1",
        }
        with running_stack(database_url, tmp_path / "stack", env) as stack:
            stack.start_dispatcher()
            deployed = stack.deploy(HELLO)

            def first_message() -> dict[str, str] | None:
                answer = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1)
                return answer["Messages"][0] if answer.get("Messages") else None

            message = wait_for(first_message, 20, "the source run's message")
            assert message["Body"] == deployed["source_runs"]["numbers"]  # the body is the task id, nothing else
            sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
            stack.start_worker()
            stack.wait_jobs_done({"numbers": 1, "doubled": 5, "sink": 5})
            assert set(stack.task_statuses("sink")) == {"Completed"}
            wait_for(
                lambda: (
                    int(
                        sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])[
                            "Attributes"
                        ]["ApproximateNumberOfMessages"]
                    )
                    == 0
                ),
                10,
                "the queue to be drained",
            )


def test_lambda_is_invoked_with_the_full_payload_and_retries_off(database_url: str, tmp_path: Path) -> None:
    dag = HELLO.replace("dag: hello", "dag: lambdas").replace(
        "    operator: python\n    inputs: [{from: {job: numbers}}]",
        "    operator: python\n    runtime: lambda_py\n    inputs: [{from: {job: numbers}}]",
    )
    with running_stack(database_url, tmp_path / "stack") as stack:
        function_env = {
            **{k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "LANG")},
            "TRACE_SERVICE_TOKEN": stack.service_token,
            "TRACE_UDF_PATH": str(REPO),
            "TRACE_LOG_LEVEL": "WARNING",
            "TRACE_HOME": str(tmp_path / "lambda-home"),
        }
        with lambda_stand_in(function_env) as stand_in:
            stack.start_dispatcher(
                {
                    **AWS_ENV,
                    "TRACE_LAMBDA_TRANSPORT": "lambda",
                    "TRACE_AWS_ENDPOINT_URL": stand_in.url,
                }
            )
            function_env["TRACE_DISPATCHER_URL"] = stack.dispatcher_url
            stack.deploy(dag)
            stack.start_worker()  # serves the ecs_python jobs
            stack.wait_jobs_done({"numbers": 1, "doubled": 5, "sink": 5})
            assert set(stack.task_statuses("doubled")) == {"Completed"}
    assert len(stand_in.invocations) == 5
    for invocation in stand_in.invocations:
        assert invocation["function"] == "trace-lambda_py"
        assert invocation["type"] == "Event"  # asynchronous: the dispatcher waits for task-complete, not the call
        payload = invocation["payload"]
        assert {"task_id", "attempt_id", "attempt_token", "job", "input_event", "outputs"} <= set(payload)
        assert payload["job"]["runtime"] == "lambda_py"
        uuid.UUID(payload["task_id"])
