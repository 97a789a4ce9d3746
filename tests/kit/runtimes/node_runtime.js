// A Lambda function in Node.js, with a minimal runtime interface client: it speaks the Lambda
// Runtime API (2018-06-01) as AWS's own clients do, so poller can run it as an environment.
// The handler fails the records whose data is "fail" through batchItemFailures, throws for
// "throw", and returns which runtime served the batch.
"use strict";

const api = `http://${process.env.AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime`;

async function handler(event, context) {
  const texts = event.Records.map((r) => Buffer.from(r.kinesis.data, "base64").toString());
  if (texts.includes("throw")) {
    throw new TypeError(`cannot handle ${texts.join(",")}`);
  }
  const failed = event.Records.filter((r, i) => texts[i] === "fail");
  return {
    batchItemFailures: failed.map((r) => ({ itemIdentifier: r.kinesis.sequenceNumber })),
    runtime: `node ${process.version}`,
    functionName: context.functionName,
    remaining: context.getRemainingTimeInMillis(),
  };
}

async function main() {
  for (;;) {
    const next = await fetch(`${api}/invocation/next`);
    const requestId = next.headers.get("lambda-runtime-aws-request-id");
    const deadline = Number(next.headers.get("lambda-runtime-deadline-ms"));
    const context = {
      awsRequestId: requestId,
      functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
      invokedFunctionArn: next.headers.get("lambda-runtime-invoked-function-arn"),
      getRemainingTimeInMillis: () => deadline - Date.now(),
    };
    const event = await next.json();
    try {
      const result = await handler(event, context);
      await fetch(`${api}/invocation/${requestId}/response`, {
        method: "POST",
        body: JSON.stringify(result),
      });
    } catch (error) {
      await fetch(`${api}/invocation/${requestId}/error`, {
        method: "POST",
        headers: { "Lambda-Runtime-Function-Error-Type": "Unhandled" },
        body: JSON.stringify({ errorType: error.name, errorMessage: error.message }),
      });
    }
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
