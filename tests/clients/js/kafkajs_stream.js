#!/usr/bin/env node
// A long-running idempotent kafkajs producer for the cluster fault drills
// (tests/clients/test_cluster_faults.py).
//
// Usage: node kafkajs_stream.js CONFIG.json OUT.jsonl
// CONFIG: {brokers: ["host:port"], topic, partitions, prefix, intervalMs,
//          stopFile, maxSeconds}
// Each partition P gets records `${prefix}-${seq}` (seq % partitions == P,
// increasing), one at a time with acks=-1, every intervalMs; it stops once
// `stopFile` appears (or after maxSeconds). OUT gets one JSON line per event:
//   {ack: [seq, partition, offset], t}   a record acknowledged at that offset
//   {error: name, retriable, message, t} a send that failed after kafkajs'
//                                         own retries (the same records are
//                                         sent again: same sequence numbers)
//   {log: message, error, protocol, retriable, t}
//                                         a kafkajs ERROR-level log line (the
//                                         Kafka error it names, if any)
//   {done: true}
'use strict'

const fs = require('fs')
const { Kafka, logLevel } = require('kafkajs')
const { errorCodes } = require('kafkajs/src/protocol/error')

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
const out = fs.openSync(process.argv[3], 'a')
const emit = (obj) => fs.writeSync(out, JSON.stringify({ ...obj, t: Date.now() / 1000 }) + '\n')

const logCreator = () => ({ namespace, level, label, log }) => {
  const { message, ...rest } = log
  process.stderr.write(`[kafkajs ${label}] [${namespace}] ${message} ${JSON.stringify(rest)}\n`)
  if (level === logLevel.ERROR) {
    // kafkajs logs the errors it retries at ERROR level without saying
    // whether they are retriable: name the Kafka protocol error the line
    // carries, if any, with its retriability from kafkajs' own table
    // (null for connection-level lines: a broker going away).
    const text = `${rest.error || ''} ${message}`
    const known = errorCodes.find((c) => c.message && text.includes(c.message))
    emit({
      log: `[${namespace}] ${message}`, error: rest.error || null,
      protocol: known ? known.type : null, retriable: known ? known.retriable : null,
    })
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function main() {
  const kafka = new Kafka({
    clientId: `vigil-stream-${cfg.prefix}`,
    brokers: cfg.brokers,
    logLevel: logLevel.INFO,
    logCreator,
    // A paused broker answers nothing: give up on a request quickly and
    // refresh metadata rather than wait the default 30 s.
    connectionTimeout: 3000,
    requestTimeout: 5000,
    retry: { initialRetryTime: 100, maxRetryTime: 1000, retries: 20 },
  })
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  const end = Date.now() + (cfg.maxSeconds || 120) * 1000
  // One loop per partition, each with one record in flight: a send that
  // fails is sent again as it was, so kafkajs reuses its sequence number
  // and the broker deduplicates it if it was written after all. (One send
  // spanning partitions would, on a partial failure, resend the partitions
  // that succeeded under new sequence numbers: duplicates by the client.)
  const loop = async (partition) => {
    for (let n = 0; !fs.existsSync(cfg.stopFile) && Date.now() < end; n++) {
      const seq = n * cfg.partitions + partition
      const v = `${cfg.prefix}-${seq}`
      for (;;) {
        try {
          const meta = await producer.send({
            topic: cfg.topic, acks: -1, messages: [{ key: v, value: v, partition }],
          })
          emit({ ack: [seq, partition, Number(meta[0].baseOffset)] })
          break
        } catch (e) {
          emit({ error: e.name, retriable: e.retriable === true, message: String(e.message) })
          if (Date.now() >= end) throw e
          await sleep(200)
        }
      }
      await sleep(cfg.intervalMs || 20)
    }
  }
  await Promise.all([...Array(cfg.partitions).keys()].map(loop))
  await producer.disconnect()
  emit({ done: true })
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`kafkajs stream error: ${err && err.stack ? err.stack : err}\n`)
    process.exit(1)
  }
)
