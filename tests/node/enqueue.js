#!/usr/bin/env node
// Enqueue one Vexora checkout from Node.js with celery-node (docs/producers.md).
//
//   REDIS_URL=redis://127.0.0.1:6379/0 node enqueue.js '{"userId": "user-1", "amount": "300", ...}'
//   echo '{...}' | REDIS_URL=... node enqueue.js
//
// Sends the Celery task `vexora.checkout.enqueue` to the queue `checkout` with the job payload
// as keyword arguments, waits for the task's result (same Redis as the result backend), prints
// the job's tradeNo and exits 0. On an error it prints a message to stderr and exits non-zero:
//   1  the worker refused the job (its error and field errors are printed)
//   2  bad usage: no REDIS_URL, or the payload is not a JSON object
//   3  Redis unreachable, or no answer within VEXORA_ENQUEUE_TIMEOUT seconds (default 30)
//
// A job that is stored but invalid (a bad email, say) is not refused here: it gets its tradeNo
// and then ends "rejected" with per-field errors, like any other job (see get_checkout / the API).
"use strict";

const fs = require("fs");
const celery = require("celery-node");

const TASK = "vexora.checkout.enqueue";
const QUEUE = "checkout";

class Failure extends Error {
  constructor(message, exitCode) {
    super(message);
    this.exitCode = exitCode;
  }
}

function readPayload() {
  const text = process.argv[2] !== undefined ? process.argv[2] : fs.readFileSync(0, "utf8");
  let payload;
  try {
    payload = JSON.parse(text);
  } catch (err) {
    throw new Failure(`payload is not valid JSON: ${err.message}`, 2);
  }
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    throw new Failure("payload must be a JSON object", 2);
  }
  return payload;
}

function withTimeout(promise, seconds) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Failure(`no answer from a worker within ${seconds}s (is one consuming "${QUEUE}"?)`, 3)),
      seconds * 1000);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function enqueue(redisUrl, payload) {
  // The Redis URL is both the broker and the result backend, as in the worker's configuration.
  const client = celery.createClient(redisUrl, redisUrl, QUEUE);
  try {
    await client.isReady().catch((err) => {
      throw new Failure(`cannot connect to Redis: ${err.message}`, 3);
    });
    // celery-node sends Celery message protocol v2: args [], kwargs = the payload.
    const result = client.createTask(TASK).applyAsync([], payload);
    let answer;
    try {
      answer = await result.get(); // polls the result backend; withTimeout bounds the wait
    } catch (err) {
      // a task that raised: celery-node rejects with the status and the exception's fields
      throw new Failure(`task ${TASK} failed: ${err.exc_type || err.message}: ${err.exc_message || ""}`, 1);
    }
    if (!answer || !answer.tradeNo) {
      const detail = answer && answer.errors ? ` ${JSON.stringify(answer.errors)}` : "";
      throw new Failure(`refused: ${(answer && answer.error) || "no tradeNo in the result"}${detail}`, 1);
    }
    return answer.tradeNo;
  } finally {
    client.disconnect().catch(() => {});
  }
}

async function main() {
  const redisUrl = process.env.REDIS_URL;
  if (!redisUrl) {
    throw new Failure("REDIS_URL is not set (the broker of the vexora-checkout workers)", 2);
  }
  const payload = readPayload();
  const seconds = Number(process.env.VEXORA_ENQUEUE_TIMEOUT || 30);
  const tradeNo = await withTimeout(enqueue(redisUrl, payload), seconds);
  console.log(tradeNo);
}

function fail(err) {
  console.error(`enqueue.js: ${err instanceof Failure ? err.message : err && err.stack ? err.stack : err}`);
  process.exit(err instanceof Failure ? err.exitCode : 1);
}

// celery-node publishes without returning the promise: a failed publish surfaces here.
process.on("unhandledRejection", fail);

main().then(() => process.exit(0), fail);
