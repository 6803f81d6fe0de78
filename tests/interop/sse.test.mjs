// Server-Sent Events (--sse) with a real EventSource client (the `eventsource` npm package, the
// WHATWG EventSource for Node): channel subscriptions through the demo RPC app, signed and Turbo
// streams, a 401 that stops the client, and reliable catch-up — the stream ends (remote
// disconnect), publications are missed, and EventSource's own reconnect sends Last-Event-ID so
// the server replays them from the memory broker's history.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { EventSource } from 'eventsource'
import { CABLE_PORT, broadcast, deferred, Inbox, transcript, withTranscript } from './helpers.mjs'

const TEST_TIMEOUT = 30000
const STREAMS_SECRET = process.env.RINGCABLE_INTEROP_STREAMS_SECRET
const TURBO_SECRET = process.env.RINGCABLE_INTEROP_TURBO_SECRET

function signStream(name, secret) {
  const data = Buffer.from(JSON.stringify(name)).toString('base64')
  return `${data}--${createHmac('sha256', secret).update(data).digest('hex')}`
}

const eventsURL = query => `http://127.0.0.1:${CABLE_PORT}/events?${query}`

// An EventSource whose requests and events go to the transcript, with every event of the types
// the server sends queued in one inbox.
function open(query) {
  const inbox = new Inbox(`events ${query}`)
  const requests = []
  const source = new EventSource(eventsURL(query), {
    fetch: (url, init) => {
      const lastId = init?.headers?.['Last-Event-ID'] ?? init?.headers?.['last-event-id'] ?? null
      requests.push({ url: String(url), lastEventId: lastId })
      transcript.push(`SSE GET ${url} last-event-id=${lastId}`)
      return fetch(url, init).then(res => {
        transcript.push(`SSE response ${res.status}`)
        return res
      })
    }
  })
  for (const type of ['message', 'welcome', 'confirm_subscription', 'confirm_history', 'ping', 'disconnect']) {
    source.addEventListener(type, ev => {
      if (type !== 'ping') transcript.push(`SSE << ${type} id=${ev.lastEventId} ${ev.data}`)
      if (type !== 'ping') inbox.push({ type, data: ev.data, id: ev.lastEventId })
    })
  }
  return { source, inbox, requests }
}

describe('SSE with EventSource', { timeout: 120000 }, () => {
  it('subscribes to a channel through the RPC app and receives broadcasts', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      const { source, inbox } = open('channel=ChatChannel&user=sse-alice')
      try {
        const opened = deferred('EventSource open')
        source.onopen = () => opened.resolve()
        await opened.promise
        assert.equal((await inbox.next('welcome')).type, 'welcome')
        const confirm = await inbox.next('confirmation')
        assert.equal(confirm.type, 'confirm_subscription')
        assert.deepEqual(JSON.parse(confirm.data), {
          type: 'confirm_subscription', identifier: JSON.stringify({ channel: 'ChatChannel' })
        })
        assert.equal(await broadcast({ stream: 'ChatChannel', data: JSON.stringify({ text: 'hello sse' }) }), 201)
        const msg = await inbox.next('message')
        assert.equal(msg.type, 'message')
        assert.deepEqual(JSON.parse(msg.data), { text: 'hello sse' })
      } finally {
        source.close()
      }
    }))

  it('streams signed $pubsub and Turbo streams without RPC channels', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      const stream = 'gid://interop/Sse/1'
      const signed = open(`signed_stream=${encodeURIComponent(signStream(stream, STREAMS_SECRET))}&user=sse-s`)
      const turbo = open(`turbo_signed_stream_name=${encodeURIComponent(signStream(stream, TURBO_SECRET))}&user=sse-t`)
      try {
        for (const s of [signed, turbo]) {
          assert.equal((await s.inbox.next('welcome')).type, 'welcome')
          assert.equal((await s.inbox.next('confirmation')).type, 'confirm_subscription')
        }
        const html = '<turbo-stream action="append" target="log">\n<template>hi</template>\n</turbo-stream>'
        assert.equal(await broadcast({ stream, data: html }), 201)
        for (const s of [signed, turbo]) {
          const msg = await s.inbox.next('message')
          assert.equal(msg.data, html)  // the text itself, its lines rejoined by EventSource
        }
      } finally {
        signed.source.close()
        turbo.source.close()
      }
    }))

  it('refused authentication (401) stops the EventSource', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      const { source } = open('channel=ChatChannel&reject=1')
      const failed = deferred('error event')
      source.onerror = ev => failed.resolve(ev)
      const ev = await failed.promise
      assert.equal(ev.code, 401)
      assert.equal(source.readyState, EventSource.CLOSED)
    }))

  it('catches up with Last-Event-ID after missed publications', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      const stream = 'gid://interop/Sse/catchup'
      const { source, inbox, requests } = open(
        `signed_stream=${encodeURIComponent(signStream(stream, STREAMS_SECRET))}&user=sse-catchup`)
      try {
        assert.equal((await inbox.next('welcome')).type, 'welcome')
        assert.equal((await inbox.next('confirmation')).type, 'confirm_subscription')
        await broadcast({ stream, data: JSON.stringify({ n: 1 }) })
        await broadcast({ stream, data: JSON.stringify({ n: 2 }) })
        const m1 = await inbox.next('message 1')
        const m2 = await inbox.next('message 2')
        assert.deepEqual(JSON.parse(m1.data), { n: 1 })
        assert.deepEqual(JSON.parse(m2.data), { n: 2 })
        assert.match(m2.id, /^2\/[^/]+\/gid:\/\/interop\/Sse\/catchup$/)

        // The server ends the stream (reconnect allowed); publications made meanwhile are missed.
        await broadcast({
          command: 'disconnect',
          payload: { identifier: JSON.stringify({ current_user: 'sse-catchup' }), reconnect: true }
        })
        const bye = await inbox.next('disconnect')
        assert.equal(bye.type, 'disconnect')
        await broadcast({ stream, data: JSON.stringify({ n: 3 }) })
        await broadcast({ stream, data: JSON.stringify({ n: 4 }) })

        // EventSource reconnects by itself (its default 3 s) with Last-Event-ID = the id of n=2.
        assert.equal((await inbox.next('welcome after reconnect')).type, 'welcome')
        assert.equal((await inbox.next('confirmation after reconnect')).type, 'confirm_subscription')
        const m3 = await inbox.next('missed message 3')
        const m4 = await inbox.next('missed message 4')
        assert.deepEqual(JSON.parse(m3.data), { n: 3 })
        assert.deepEqual(JSON.parse(m4.data), { n: 4 })
        assert.match(m4.id, /^4\//)
        assert.equal((await inbox.next('history confirmation')).type, 'confirm_history')
        assert.equal(requests.length, 2)
        assert.equal(requests[1].lastEventId, m2.id)

        await broadcast({ stream, data: JSON.stringify({ n: 5 }) })
        assert.deepEqual(JSON.parse((await inbox.next('live message 5')).data), { n: 5 })
      } finally {
        source.close()
      }
    }))
})
