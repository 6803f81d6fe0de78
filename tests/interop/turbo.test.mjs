// RPC-less channels with the official AnyCable JS client: a Turbo Streams subscription whose
// identifier and signed name are built exactly as turbo-rails builds them, and a $pubsub signed
// stream via cable.streamFromSigned. Signatures are made here with node:crypto (Rails
// MessageVerifier: strict base64 of the JSON-encoded name, "--", hex HMAC-SHA256 of the base64).
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { createCable } from '@anycable/core'
import { cableURL, broadcast, deferred, Inbox, LoggingWebSocket, withTranscript } from './helpers.mjs'

const TEST_TIMEOUT = 30000
const TURBO_SECRET = process.env.RINGCABLE_INTEROP_TURBO_SECRET
const STREAMS_SECRET = process.env.RINGCABLE_INTEROP_STREAMS_SECRET

function signStream(name, secret) {
  const data = Buffer.from(JSON.stringify(name)).toString('base64')
  return `${data}--${createHmac('sha256', secret).update(data).digest('hex')}`
}

describe('RPC-less channels (@anycable/core)', { timeout: 120000 }, () => {
  let cable

  before(() => {
    assert.ok(TURBO_SECRET && STREAMS_SECRET, 'run through tests/interop/run.sh')
    cable = createCable(cableURL('user=turbo'), {
      protocol: 'actioncable-v1-json',
      websocketImplementation: LoggingWebSocket,
      logLevel: 'error',
      maxReconnectAttempts: 0
    })
  })

  after(() => {
    cable?.disconnect()
  })

  it('Turbo::StreamsChannel with a turbo-rails signed name is confirmed and receives broadcasts',
    { timeout: TEST_TIMEOUT }, () =>
      withTranscript(async () => {
        const stream = 'gid://interop/Room/1:messages'
        const signed = signStream(stream, TURBO_SECRET)
        // turbo-rails' <turbo-cable-stream-source> subscribes with exactly these params.
        const channel = cable.subscribeTo('Turbo::StreamsChannel', { signed_stream_name: signed })
        const inbox = new Inbox('turbo messages')
        channel.on('message', msg => inbox.push(msg))
        await Promise.race([channel.ensureSubscribed(), deferred('turbo confirmation').promise])
        assert.equal(channel.state, 'connected')
        assert.deepEqual(JSON.parse(channel.identifier),
          { channel: 'Turbo::StreamsChannel', signed_stream_name: signed })
        const html = '<turbo-stream action="append" target="messages"><template>hi</template></turbo-stream>'
        assert.equal(await broadcast({ stream, data: html }), 201)
        assert.equal(await inbox.next('the turbo stream broadcast'), html)
      }))

  it('Turbo::StreamsChannel signed with another key is rejected', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      const channel = cable.subscribeTo('Turbo::StreamsChannel',
        { signed_stream_name: signStream('gid://interop/Room/2', 'wrong-key') })
      await assert.rejects(channel.ensureSubscribed())
    }))

  it('cable.streamFromSigned ($pubsub) receives broadcasts', { timeout: TEST_TIMEOUT }, () =>
    withTranscript(async () => {
      const channel = cable.streamFromSigned(signStream('signed-room', STREAMS_SECRET))
      const inbox = new Inbox('pubsub messages')
      channel.on('message', msg => inbox.push(msg))
      await Promise.race([channel.ensureSubscribed(), deferred('$pubsub confirmation').promise])
      assert.equal(await broadcast({ stream: 'signed-room', data: JSON.stringify({ n: 1 }) }), 201)
      assert.deepEqual(await inbox.next('the $pubsub broadcast'), { n: 1 })
    }))
})
