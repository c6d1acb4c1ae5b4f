// Runs the same small API on five Node frameworks, each on a port of its
// own, for the differential path test (test/e2e/paths_test.go). Every
// handler answers 200 with an x-handler header naming itself, so the test
// sees which handler a spelling of a request reached.
//
// Prints one line of JSON to standard output once every server listens:
//   {"express4": PORT, "express5": PORT, "koa": PORT, "fastify": PORT, "hono": PORT}
// and runs until standard input closes.
import http from 'node:http';
import express4 from 'express4';
import express5 from 'express5';
import Koa from 'koa';
import Router from '@koa/router';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { serve } from '@hono/node-server';

// The API: method, path (in each framework's syntax for ":id"), handler name.
const ROUTES = [
  ['post', '/v1/chat/completions', 'chat'],
  ['get', '/v1/models', 'models'],
  ['get', '/v1/models/:id', 'model'],
  ['get', '/v1/files/:id', 'file_get'],
  ['delete', '/v1/files/:id', 'file_delete'],
];

function expressApp(express) {
  const app = express();
  for (const [method, path, name] of ROUTES) {
    app[method](path, (req, res) => res.set('x-handler', name).json({ handler: name }));
  }
  return http.createServer(app);
}

function koaApp() {
  const app = new Koa();
  const router = new Router();
  for (const [method, path, name] of ROUTES) {
    router[method](path, (ctx) => {
      ctx.set('x-handler', name);
      ctx.body = { handler: name };
    });
  }
  app.use(router.routes()).use(router.allowedMethods());
  return http.createServer(app.callback());
}

async function fastifyApp() {
  const app = Fastify();
  for (const [method, path, name] of ROUTES) {
    app[method](path, async (req, reply) => {
      reply.header('x-handler', name);
      return { handler: name };
    });
  }
  await app.ready();
  return app.server;
}

function honoApp() {
  const app = new Hono();
  for (const [method, path, name] of ROUTES) {
    app[method](path, (c) => {
      c.header('x-handler', name);
      return c.json({ handler: name });
    });
  }
  return app;
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server.address().port));
  });
}

const ports = {
  express4: await listen(expressApp(express4)),
  express5: await listen(expressApp(express5)),
  koa: await listen(koaApp()),
  fastify: await listen(await fastifyApp()),
};
ports.hono = await new Promise((resolve) => {
  const s = serve({ fetch: honoApp().fetch, port: 0, hostname: '127.0.0.1' }, (info) => resolve(info.port));
  s.on('error', (e) => { throw e; });
});
process.stdout.write(JSON.stringify(ports) + '\n');
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
