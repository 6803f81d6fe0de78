// The README's first example, run literally: `ringcable --public`, the official @anycable/core client
// with its default options subscribing with cable.streamFrom("chat"), and the README's curl broadcast.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import WebSocket from 'ws'
import { createCable } from '@anycable/core'

const PORT = process.env.RINGCABLE_README_PORT
const BROADCAST_PORT = process.env.RINGCABLE_README_BROADCAST_PORT

test('README example: --public, streamFrom("chat"), curl broadcast', { timeout: 30000 }, async () => {
  assert.ok(PORT && BROADCAST_PORT, 'run through tests/interop/readme.sh')
  const cable = createCable(`ws://127.0.0.1:${PORT}/cable`, {
    websocketImplementation: WebSocket,
    logLevel: 'error',
    maxReconnectAttempts: 0
  })
  try {
    const channel = cable.streamFrom('chat')
    const received = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no broadcast within 10 s')), 10000)
      channel.on('message', (msg) => {
        clearTimeout(timer)
        resolve(msg)
      })
    })
    await channel.ensureSubscribed()
    const status = execFileSync('curl', [
      '-sS', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST',
      `http://127.0.0.1:${BROADCAST_PORT}/_broadcast`, '-H', 'Content-Type: application/json',
      '-d', '{"stream":"chat","data":"{\\"text\\":\\"hello\\"}"}'
    ]).toString()
    assert.equal(status, '201')
    assert.deepEqual(await received, { text: 'hello' })
  } finally {
    cable.disconnect()
  }
})
