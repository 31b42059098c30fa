#!/usr/bin/env node
// kafkajs driver for the vigil pytest suite (tests/clients/test_kafkajs.py).
//
// Usage: node kafkajs_driver.js COMMAND.json RESULT.json
// Reads one JSON command from COMMAND.json, writes one JSON result to
// RESULT.json (a file, not stdout: process.exit() would cut a large piped
// stdout short). kafkajs' own logs go to stderr. Binary data is base64 in
// both directions.
//
// Commands (all have "brokers": ["host:port"]):
//   {action: "create-topic", topic, partitions}
//       -> {created: bool, partitions: [0, 1, 2]}
//   {action: "produce", topic, compression: "none"|"gzip", idempotent: bool,
//    records: [{key, value, headers: [[k, v], ...]}]}      (key/value may be null)
//       -> {results: [{partition, offset}]}   (per record, in input order)
//   {action: "consume", topic, group, max, idleMs, timeoutMs}
//       consumes through the group from the committed offsets (else earliest),
//       commits each processed batch synchronously, stops after >= max records
//       (or when idle for idleMs after reaching max when settle is set)
//       -> {records: [{partition, offset, key, value, headers, timestamp}]}
//   {action: "committed", topic, group}
//       -> {offsets: {partition: offset}}
'use strict'

const fs = require('fs')
const { Kafka, logLevel, CompressionTypes, Partitioners } = require('kafkajs')

const stderrLogger = () => ({ namespace, level, label, log }) => {
  const { message, ...rest } = log
  process.stderr.write(`[kafkajs ${label}] [${namespace}] ${message} ${JSON.stringify(rest)}\n`)
}

function kafkaFor(cmd) {
  return new Kafka({
    clientId: 'vigil-kafkajs-test',
    brokers: cmd.brokers,
    // Optional security (test_security.py): ssl = {ca: PEM path},
    // sasl = {mechanism, username, password}.
    ssl: cmd.ssl ? { ca: [fs.readFileSync(cmd.ssl.ca, 'utf-8')] } : undefined,
    sasl: cmd.sasl || undefined,
    logLevel: logLevel.INFO,
    logCreator: stderrLogger,
    connectionTimeout: 10000,
    requestTimeout: 30000,
    retry: { initialRetryTime: 100, retries: 8 },
  })
}

const b64 = (buf) => (buf === null || buf === undefined ? null : Buffer.from(buf).toString('base64'))
const unb64 = (s) => (s === null || s === undefined ? null : Buffer.from(s, 'base64'))

function headersToObject(pairs) {
  // kafkajs takes headers as an object; repeated keys become arrays (kept adjacent).
  const obj = {}
  for (const [k, v] of pairs) {
    const val = unb64(v)
    if (Object.prototype.hasOwnProperty.call(obj, k)) {
      obj[k] = Array.isArray(obj[k]) ? [...obj[k], val] : [obj[k], val]
    } else {
      obj[k] = val
    }
  }
  return obj
}

function headersToPairs(obj) {
  const out = []
  for (const k of Object.keys(obj || {})) {
    const v = obj[k]
    if (Array.isArray(v)) {
      for (const x of v) out.push([k, b64(x)])
    } else {
      out.push([k, b64(v)])
    }
  }
  return out
}

async function createTopic(cmd) {
  const admin = kafkaFor(cmd).admin()
  await admin.connect()
  try {
    const created = await admin.createTopics({
      topics: [{ topic: cmd.topic, numPartitions: cmd.partitions, replicationFactor: 1 }],
      waitForLeaders: true,
      timeout: 30000,
    })
    const md = await admin.fetchTopicMetadata({ topics: [cmd.topic] })
    const partitions = md.topics[0].partitions.map((p) => p.partitionId).sort((a, b) => a - b)
    return { created, partitions }
  } finally {
    await admin.disconnect()
  }
}

async function produce(cmd) {
  const kafka = kafkaFor(cmd)
  const admin = kafka.admin()
  await admin.connect()
  const md = await admin.fetchTopicMetadata({ topics: [cmd.topic] })
  await admin.disconnect()
  const partitionMetadata = md.topics[0].partitions
  // The same partitioner the producer would use (Java-compatible murmur2);
  // applied here so that each record's partition (and so its offset) is known.
  const partitioner = Partitioners.DefaultPartitioner()

  const producer = kafka.producer({
    idempotent: !!cmd.idempotent,
    maxInFlightRequests: cmd.idempotent ? 1 : 5,
    createPartitioner: Partitioners.DefaultPartitioner,
  })
  await producer.connect()
  const compression = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP }[cmd.compression || 'none']
  if (compression === undefined) throw new Error(`unsupported compression ${cmd.compression}`)

  const results = []
  const chunk = cmd.chunk || 100
  try {
    for (let start = 0; start < cmd.records.length; start += chunk) {
      const recs = cmd.records.slice(start, start + chunk)
      const messages = recs.map((r) => {
        const m = { key: unb64(r.key), value: unb64(r.value), headers: headersToObject(r.headers || []) }
        if (r.timestamp !== null && r.timestamp !== undefined) m.timestamp = String(r.timestamp)
        m.partition = partitioner({ topic: cmd.topic, partitionMetadata, message: m })
        return m
      })
      const meta = await producer.send({ topic: cmd.topic, messages, compression, acks: -1 })
      const base = {}
      for (const rm of meta) {
        if (rm.errorCode !== 0) throw new Error(`produce error ${JSON.stringify(rm)}`)
        base[rm.partition] = BigInt(rm.baseOffset)
      }
      const idx = {}
      for (const m of messages) {
        const i = idx[m.partition] || 0n
        idx[m.partition] = i + 1n
        if (base[m.partition] === undefined) throw new Error(`no produce result for partition ${m.partition}`)
        results.push({ partition: m.partition, offset: Number(base[m.partition] + i) })
      }
    }
  } finally {
    await producer.disconnect()
  }
  return { results }
}

async function consume(cmd) {
  const kafka = kafkaFor(cmd)
  const consumer = kafka.consumer({
    groupId: cmd.group,
    sessionTimeout: 10000,
    heartbeatInterval: 500,
    rebalanceTimeout: 10000,
    maxWaitTimeInMs: 200,
  })
  const records = []
  let stopping = false
  let done
  const finished = new Promise((resolve) => { done = resolve })
  let settleTimer = null

  await consumer.connect()
  await consumer.subscribe({ topics: [cmd.topic], fromBeginning: true })
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
      let last = null
      for (const m of batch.messages) {
        if (stopping && !cmd.settleMs) break
        if (!isRunning() || isStale()) break
        records.push({
          partition: batch.partition,
          offset: Number(m.offset),
          key: b64(m.key),
          value: b64(m.value),
          headers: headersToPairs(m.headers),
          timestamp: Number(m.timestamp),
        })
        resolveOffset(m.offset)
        last = m.offset
        if (records.length >= cmd.max && !stopping) {
          stopping = true
          if (cmd.settleMs) {
            settleTimer = setTimeout(() => done(), cmd.settleMs)
          }
        }
      }
      if (last !== null) {
        // synchronous commit of what was processed
        await consumer.commitOffsets([
          { topic: batch.topic, partition: batch.partition, offset: (BigInt(last) + 1n).toString() },
        ])
      }
      await heartbeat()
      if (stopping && !cmd.settleMs) done()
    },
  })
  const timeout = new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`consume timed out after ${cmd.timeoutMs} ms with ${records.length} of ${cmd.max} records`)), cmd.timeoutMs || 60000))
  try {
    await Promise.race([finished, timeout])
  } finally {
    if (settleTimer) clearTimeout(settleTimer)
    await consumer.disconnect()
  }
  return { records }
}

async function committed(cmd) {
  const admin = kafkaFor(cmd).admin()
  await admin.connect()
  try {
    const res = await admin.fetchOffsets({ groupId: cmd.group, topics: [cmd.topic] })
    const offsets = {}
    for (const p of res[0].partitions) offsets[p.partition] = Number(p.offset)
    return { offsets }
  } finally {
    await admin.disconnect()
  }
}

async function main() {
  const cmd = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
  const actions = { 'create-topic': createTopic, produce, consume, committed }
  const fn = actions[cmd.action]
  if (!fn) throw new Error(`unknown action ${cmd.action}`)
  const result = await fn(cmd)
  fs.writeFileSync(process.argv[3], JSON.stringify(result))
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`kafkajs driver error: ${err && err.stack ? err.stack : err}\n`)
    if (err && err.originalError) process.stderr.write(`original: ${err.originalError.stack || err.originalError}\n`)
    process.exit(1)
  }
)
