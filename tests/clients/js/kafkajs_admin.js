#!/usr/bin/env node
// kafkajs admin driver for tests/clients/test_kafka_admin.py.
//
// Usage: node kafkajs_admin.js COMMAND.json RESULT.json (as kafkajs_driver.js).
// One command: {action: "admin-scenario", brokers, topic, group}
// runs kafkajs' admin calls in order against the broker and reports what
// each returned (errors as {error: type, message}); the Python test judges.
// {action: "reassign", brokers, topic, partition, to} asks for one
// partition to move to broker `to` (a cluster, test_console_cluster.py);
// {action: "list-reassignments", brokers} lists those in progress.
'use strict'

const fs = require('fs')
const { Kafka, logLevel, ConfigResourceTypes } = require('kafkajs')

const stderrLogger = () => ({ namespace, level, label, log }) => {
  const { message, ...rest } = log
  process.stderr.write(`[kafkajs ${label}] [${namespace}] ${message} ${JSON.stringify(rest)}\n`)
}

function kafkaFor(cmd) {
  return new Kafka({
    clientId: 'vigil-kafkajs-admin-test',
    brokers: cmd.brokers,
    logLevel: logLevel.WARN,
    logCreator: stderrLogger,
    connectionTimeout: 10000,
    requestTimeout: 30000,
    // Refusals are final: a few retries only, so a wrong answer fails fast.
    retry: { initialRetryTime: 100, retries: 2 },
  })
}

async function attempt(fn) {
  try {
    return { ok: await fn() }
  } catch (e) {
    // createTopics wraps per-topic errors in an aggregate error.
    const inner = (e.errors && e.errors[0]) || e
    return { error: inner.type || inner.name, message: inner.message }
  }
}

async function scenario(cmd) {
  const kafka = kafkaFor(cmd)
  const admin = kafka.admin()
  await admin.connect()
  const out = {}
  try {
    const topic = cmd.topic
    out.create = await attempt(() => admin.createTopics({
      waitForLeaders: true,
      topics: [{
        topic,
        replicaAssignment: [
          { partition: 0, replicas: [1] },
          { partition: 1, replicas: [1] },
        ],
        configEntries: [
          { name: 'delete.retention.ms', value: '1000' },
          { name: 'min.insync.replicas', value: '1' },
        ],
      }],
    }))
    out.createUnknownConfig = await attempt(() => admin.createTopics({
      topics: [{ topic: topic + '-bad', numPartitions: 1, configEntries: [{ name: 'no.such.config', value: '1' }] }],
    }))
    out.createValidateOnly = await attempt(() => admin.createTopics({
      validateOnly: true,
      // Nothing is created, so there are no leaders to wait for.
      waitForLeaders: false,
      topics: [{ topic: topic + '-dry', numPartitions: 1 }],
    }))
    out.topicsAfter = await admin.listTopics()
    const meta = await admin.fetchTopicMetadata({ topics: [topic] })
    out.partitions = meta.topics[0].partitions.map((p) => p.partitionId).sort()

    out.alter = await attempt(() => admin.alterConfigs({
      validateOnly: false,
      resources: [{
        type: ConfigResourceTypes.TOPIC,
        name: topic,
        configEntries: [{ name: 'retention.ms', value: '3600000' }],
      }],
    }))
    out.alterInvalid = await attempt(() => admin.alterConfigs({
      resources: [{
        type: ConfigResourceTypes.TOPIC,
        name: topic,
        configEntries: [{ name: 'retention.ms', value: 'tomorrow' }],
      }],
    }))
    const described = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['retention.ms', 'delete.retention.ms'] }],
    })
    out.described = {}
    for (const e of described.resources[0].configEntries) out.described[e.configName] = e.configValue

    const producer = kafka.producer()
    await producer.connect()
    await producer.send({
      topic,
      messages: Array.from({ length: 10 }, (_, i) => ({ key: `k${i}`, value: `v${i}`, partition: 0 })),
    })
    await producer.disconnect()
    out.deleteRecords = await attempt(() => admin.deleteTopicRecords({
      topic,
      partitions: [{ partition: 0, offset: '4' }],
    }))
    out.offsets = await admin.fetchTopicOffsets(topic)

    const group = cmd.group
    await admin.setOffsets({ groupId: group, topic, partitions: [{ partition: 0, offset: '7' }] })
    out.committedBefore = await admin.fetchOffsets({ groupId: group, topics: [topic] })
    out.deleteGroups = await attempt(() => admin.deleteGroups([group]))
    out.deleteUnknownGroup = await attempt(() => admin.deleteGroups([group + '-never']))
    out.committedAfter = await admin.fetchOffsets({ groupId: group, topics: [topic] })
    // One broker: reassigning to itself is a no-op, to a broker that does
    // not exist is refused; nothing is ever in progress.
    out.reassignSelf = await attempt(() => admin.alterPartitionReassignments({
      topics: [{ topic, partitionAssignment: [{ partition: 0, replicas: [cmd.nodeId] }] }],
    }))
    out.reassignUnknown = await attempt(() => admin.alterPartitionReassignments({
      topics: [{ topic, partitionAssignment: [{ partition: 0, replicas: [cmd.nodeId + 7] }] }],
    }))
    out.reassignments = await attempt(() => admin.listPartitionReassignments({}))
  } finally {
    await admin.disconnect()
  }
  return out
}

// One kafkajs admin call on a fresh connection.
async function oneCall(cmd, fn) {
  const admin = kafkaFor(cmd).admin()
  await admin.connect()
  try {
    return await attempt(() => fn(admin))
  } finally {
    await admin.disconnect()
  }
}

const calls = {
  reassign: (cmd) => oneCall(cmd, (admin) => admin.alterPartitionReassignments({
    topics: [{ topic: cmd.topic, partitionAssignment: [{ partition: cmd.partition, replicas: [cmd.to] }] }],
  })),
  'list-reassignments': (cmd) => oneCall(cmd, (admin) => admin.listPartitionReassignments({})),
}

async function main() {
  const [cmdFile, outFile] = process.argv.slice(2)
  const cmd = JSON.parse(fs.readFileSync(cmdFile, 'utf8'))
  let result
  if (cmd.action === 'admin-scenario') {
    result = await scenario(cmd)
  } else if (calls[cmd.action]) {
    result = await calls[cmd.action](cmd)
  } else {
    throw new Error(`unknown action ${cmd.action}`)
  }
  fs.writeFileSync(outFile, JSON.stringify(result))
  process.exit(0)
}

main().catch((e) => {
  process.stderr.write(`driver failed: ${e.stack || e}\n`)
  process.exit(1)
})
