// The official Rails client (@rails/actioncable) against ringcable + the rpc_stub demo app.
import './setup_globals.mjs'
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import ActionCable from '@rails/actioncable'
import WebSocket from 'ws'
import { cableURL, broadcast, deferred, Inbox, withTranscript } from './helpers.mjs'

const TEST_TIMEOUT = 30000

// Creates a subscription whose callbacks feed promises/inboxes the scenarios can await.
function subscribe(consumer, params) {
  const s = {
    connected: deferred(`"connected" callback for ${JSON.stringify(params)}`),
    rejected: deferred(`"rejected" callback for ${JSON.stringify(params)}`),
    disconnected: deferred(`"disconnected" callback for ${JSON.stringify(params)}`),
    received: new Inbox(`received(${JSON.stringify(params)})`)
  }
  // Not every scenario awaits every promise; keep the unused ones from being unhandled rejections.
  for (const d of [s.connected, s.rejected, s.disconnected]) d.promise.catch(() => {})
  s.subscription = consumer.subscriptions.create(params, {
    connected() {
      s.connected.resolve(true)
    },
    rejected() {
      s.rejected.resolve(true)
    },
    disconnected(info) {
      s.disconnected.resolve(info)
    },
    received(data) {
      s.received.push(data)
    }
  })
  return s
}

describe('@rails/actioncable', { timeout: 120000 }, () => {
  let consumer
  let chat

  before(() => {
    assert.equal(ActionCable.adapters.WebSocket, globalThis.WebSocket, 'ws must be the WebSocket adapter')
    consumer = ActionCable.createConsumer(cableURL('user=alice'))
  })

  after(() => {
    // Idempotent; makes sure no reconnect timer keeps the process alive if a scenario failed.
    consumer?.disconnect()
  })

  it('connects and confirms a ChatChannel subscription', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      chat = subscribe(consumer, { channel: 'ChatChannel', stream: 'room1' })
      assert.equal(await chat.connected.promise, true)
      assert.equal(consumer.connection.isOpen(), true)
      assert.equal(consumer.connection.getProtocol(), 'actioncable-v1-json')
      assert.equal(chat.subscription.identifier, JSON.stringify({ channel: 'ChatChannel', stream: 'room1' }))
    }))

  it('perform("echo") comes back through received', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      assert.ok(chat, 'needs the subscription from the first scenario')
      assert.equal(chat.subscription.perform('echo', { text: 'hi' }), true, 'perform should send')
      // The demo app transmits the command's data verbatim; Rails adds "action" to it.
      const msg = await chat.received.next('the echo reply')
      assert.deepEqual(msg, { text: 'hi', action: 'echo' })
    }))

  it('an HTTP broadcast to the stream reaches received', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      assert.ok(chat, 'needs the subscription from the first scenario')
      const status = await broadcast({ stream: 'room1', data: JSON.stringify({ text: 'hello' }) })
      assert.equal(status, 201)
      const msg = await chat.received.next('the broadcast')
      assert.deepEqual(msg, { text: 'hello' })
    }))

  it('a RejectChannel subscription triggers rejected', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      const rejected = subscribe(consumer, { channel: 'RejectChannel' })
      assert.equal(await rejected.rejected.promise, true)
      // The rejected subscription is forgotten; the confirmed one is still there and still works.
      assert.deepEqual(
        consumer.subscriptions.subscriptions.map(s => s.identifier),
        [chat.subscription.identifier]
      )
      chat.subscription.perform('echo', { text: 'still here' })
      assert.deepEqual(await chat.received.next('the echo after the rejection'), { text: 'still here', action: 'echo' })
    }))

  it('consumer.disconnect() closes the connection', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      const ws = consumer.connection.webSocket
      assert.ok(ws, 'an open socket is expected')
      const closed = deferred('the WebSocket close event')
      ws.once('close', code => closed.resolve(code))
      consumer.disconnect()
      // Closing handshake completed with the server (ws reports 1005 when the close frame has no code).
      const code = await closed.promise
      assert.ok([1000, 1005].includes(code), `unexpected close code ${code}`)
      assert.equal(ws.readyState, WebSocket.CLOSED)
      assert.deepEqual(await chat.disconnected.promise, { willAttemptReconnect: false })
      assert.equal(consumer.connection.isOpen(), false)
    }))

  it('a connection rejected by the app gets disconnect(unauthorized) without reconnect', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      const denied = ActionCable.createConsumer(cableURL('user=mallory&reject=1'))
      try {
        const sub = subscribe(denied, { channel: 'ChatChannel', stream: 'room1' })
        const ws = denied.connection.webSocket
        const closed = deferred('the server to close the rejected connection')
        ws.once('close', code => closed.resolve(code))
        const disconnectFrame = deferred('the disconnect frame')
        ws.on('message', data => {
          const m = JSON.parse(data.toString())
          if (m.type === 'disconnect') disconnectFrame.resolve(m)
        })
        assert.deepEqual(await disconnectFrame.promise, { type: 'disconnect', reason: 'unauthorized', reconnect: false })
        await closed.promise
        assert.deepEqual(await sub.disconnected.promise, { willAttemptReconnect: false })
        assert.equal(denied.connection.isOpen(), false)
      } finally {
        denied.disconnect()
      }
    }))
})
