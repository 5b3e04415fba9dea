import { timingSafeEqual, createHash } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import { Type } from '@sinclair/typebox';
import { SistemoError, httpStatusFor, isErrorCode } from '../errors.js';
import type { Context, Progress } from '../domain/context.js';
import { deleteVm, deployVm, getVm, restartVm, sshTarget, startVm, stopVm } from '../domain/vms.js';
import { attachVolume, createVolume, deleteVolume, detachVolume, listVolumes, resizeVolume, showVolume } from '../domain/volumes.js';
import { createNetwork, deleteNetwork, exposePort, listNetworks, listVmDetails, unexposePort } from '../domain/networks.js';
import { reconcile, type ReconcileReport } from '../domain/recovery.js';
import type { AcceleratorChoice } from '../engine/accelerator.js';
import { RateLimiter } from './rate-limit.js';
import {
  AttachBody, AuditEntry, CreateNetworkBody, CreateVolumeBody, DeleteVmQuery, DeployBody, ErrorBody, ExposeBody, HistoryQuery,
  NameParams, NetworkView, ResizeBody, SshTarget, UnexposeQuery, VmPortParams, VmView, VmVolumeParams, VolumeView,
} from './schemas.js';

export const apiVersion = '0.5.0';

/** Daemon facts the API reports besides the domain state. */
export interface DaemonInfo {
  /** False while the daemon recovers interrupted operations at start; requests get 503 then. */
  ready(): boolean;
  lastReconcile(): ReconcileReport | undefined;
  accelerator(): Promise<AcceleratorChoice | undefined>;
  /** Counts requests that change state, so shutdown can wait for them. */
  inFlight: { count: number };
}

/** Request bodies are small JSON documents; anything larger is refused before parsing. */
const bodyLimitBytes = 64 * 1024;

/** Returns whether a connection comes from this host: the Unix socket or any loopback address. */
function isLocalAddress(address: string | undefined): boolean {
  if (address === undefined || address === '::1') return true;
  const ipv4 = address.startsWith('::ffff:') ? address.slice('::ffff:'.length) : address;
  return ipv4.startsWith('127.');
}

function clientKey(request: FastifyRequest): string {
  // The connection's own address: a forwarded header from the client is never trusted here.
  return request.socket.remoteAddress ?? 'unix-socket';
}

function sameSecret(given: string, expected: string): boolean {
  // Hashing first makes both inputs the same length, so the comparison time does not leak it.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

function presentedKey(request: FastifyRequest): string | undefined {
  const header = request.headers['x-api-key'];
  if (typeof header === 'string') return header;
  const authorization = request.headers.authorization;
  if (typeof authorization === 'string' && authorization.startsWith('Bearer ')) return authorization.slice('Bearer '.length);
  return undefined;
}

function actorOf(request: FastifyRequest): string {
  const address = request.socket.remoteAddress;
  return address === undefined ? 'local' : isLocalAddress(address) ? `local:${address}` : `remote:${address}`;
}

/** Turns the first schema violation into a sentence that names the field. */
function describeValidation(validation: unknown, fallback: string | undefined): string {
  const first = Array.isArray(validation) ? (validation[0] as { instancePath?: string; keyword?: string; message?: string; params?: Record<string, unknown> } | undefined) : undefined;
  if (!first) return fallback ?? 'bad input';
  const field = (first.instancePath ?? '').replace(/^\//, '').replaceAll('/', '.');
  if (first.keyword === 'additionalProperties') return `unknown field "${String(first.params?.additionalProperty)}"`;
  if (first.keyword === 'required') return `missing field "${String(first.params?.missingProperty)}"`;
  return `field "${field || 'body'}" ${first.message ?? 'is invalid'}`;
}

/** Sets the headers every response carries, errors included. */
function setSecurityHeaders(reply: FastifyReply): void {
  reply.header('x-content-type-options', 'nosniff');
  reply.header('x-frame-options', 'DENY');
  reply.header('content-security-policy', "default-src 'none'; frame-ancestors 'none'");
  reply.header('referrer-policy', 'no-referrer');
  reply.header('cache-control', 'no-store');
}

function sendError(reply: FastifyReply, error: SistemoError): FastifyReply {
  return reply.status(httpStatusFor(error.code)).send({ error: { code: error.code, message: error.message } });
}

/**
 * Sends the outcome of a long operation. With `Accept: application/x-ndjson` the client gets progress lines
 * as they happen and then one result or error line; otherwise one JSON document at the end.
 */
async function answerWithProgress<T>(
  request: FastifyRequest,
  reply: FastifyReply,
  status: number,
  work: (progress: Progress) => Promise<T>,
): Promise<unknown> {
  const streaming = (request.headers.accept ?? '').includes('application/x-ndjson');
  if (!streaming) return reply.status(status).send(await work(() => {}));
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  const line = (value: unknown) => {
    if (!raw.writableEnded) raw.write(`${JSON.stringify(value)}\n`);
  };
  try {
    const result = await work((message) => line({ type: 'progress', message }));
    line({ type: 'result', status, result });
  } catch (error) {
    const known = toSistemoError(error);
    if (known.code === 'internal') request.log.error({ err: error }, 'request failed');
    line({ type: 'error', status: httpStatusFor(known.code), error: { code: known.code, message: known.message } });
  }
  raw.end();
  return undefined;
}

function toSistemoError(error: unknown): SistemoError {
  if (error instanceof SistemoError) return error;
  return new SistemoError('internal', `Internal error: ${(error as Error)?.message ?? String(error)}, see the daemon log`, { cause: error });
}

/** Builds the HTTP application: authentication, rate limiting, headers, routes and errors. */
export async function buildApp(context: Context, info: DaemonInfo, options: { logger?: boolean | object } = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: bodyLimitBytes,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    // Names are validated by the domain with a clear message, so long ones must reach it.
    routerOptions: { maxParamLength: 1024 },
    // Errors Fastify raises before routing (a bad percent-encoding) get the API's error shape.
    frameworkErrors: (error, _request, reply: FastifyReply) => {
      // These replies skip the onSend hook, so the headers are set here.
      setSecurityHeaders(reply);
      void reply.status(400).send({ error: { code: 'invalid_argument', message: `Invalid request: ${error.message}` } });
    },
    // A request the HTTP parser rejects (an unknown method, a broken header) never reaches
    // Fastify; it still gets a JSON error in the API's shape.
    clientErrorHandler: (_error, socket) => {
      const body = JSON.stringify({ error: { code: 'invalid_argument', message: 'Invalid request: the HTTP request could not be parsed' } });
      if (socket.writable) {
        socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n${body}`);
      } else {
        socket.destroy();
      }
    },
  });
  const limiter = new RateLimiter(context.config.rate_limit_rps, context.config.rate_limit_burst);
  const pruneTimer = setInterval(() => limiter.prune(), 10_000);
  pruneTimer.unref();
  app.addHook('onClose', async () => clearInterval(pruneTimer));

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'Sistemo API', version: apiVersion, description: 'VMs and volumes on one host. Errors are {"error": {"code", "message"}}.' },
      components: { securitySchemes: { apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' } } },
    },
  });
  app.addSchema(ErrorBody);

  app.addHook('onRequest', async (request, reply) => {
    if (!info.ready()) {
      reply.header('retry-after', '2');
      return sendError(reply, new SistemoError('unavailable', 'The daemon is starting and finishing operations interrupted by its last stop: try again in a few seconds'));
    }
    const wait = limiter.take(clientKey(request));
    if (wait > 0) {
      reply.header('retry-after', String(wait));
      return sendError(reply, new SistemoError('rate_limited', `Too many requests: the limit is ${context.config.rate_limit_rps} per second, retry after ${wait} s`));
    }
    if (!isLocalAddress(request.socket.remoteAddress)) {
      const key = presentedKey(request);
      if (!context.config.api_key || key === undefined || !sameSecret(key, context.config.api_key)) {
        return reply.status(401).send({ error: { code: 'unauthorized', message: 'Missing or wrong API key: send it as X-API-Key or Authorization: Bearer' } });
      }
    }
    return undefined;
  });

  app.addHook('onSend', async (_request, reply, payload) => {
    setSecurityHeaders(reply);
    return payload;
  });

  app.setErrorHandler((error: unknown, request, reply) => {
    if (error instanceof SistemoError) return sendError(reply, error);
    const fastifyError = error as { validation?: unknown; statusCode?: number; code?: string; message?: string };
    if (fastifyError.validation) {
      return sendError(reply, new SistemoError('invalid_argument', `Invalid request: ${describeValidation(fastifyError.validation, fastifyError.message)}`));
    }
    if (fastifyError.statusCode && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
      const code = fastifyError.statusCode === 404 ? 'not_found' : 'invalid_argument';
      return reply.status(fastifyError.statusCode).send({ error: { code, message: `Invalid request: ${fastifyError.message ?? 'bad input'}` } });
    }
    request.log.error({ err: error }, 'request failed');
    context.log.error({ err: error, url: request.url }, 'request failed');
    return sendError(reply, toSistemoError(error));
  });

  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new SistemoError('not_found', `Route ${request.method} ${request.url.split('?')[0]} not found: see /api/v1/openapi.json`)));

  const errors = { 400: { $ref: 'Error#' }, 404: { $ref: 'Error#' }, 409: { $ref: 'Error#' }, 507: { $ref: 'Error#' } };
  const mutating = <T>(work: () => Promise<T>) => async () => {
    info.inFlight.count++;
    try {
      return await work();
    } finally {
      info.inFlight.count--;
    }
  };

  app.get('/api/v1/health', { schema: { response: { 200: Type.Object({ status: Type.String(), version: Type.String() }) } } },
    async () => ({ status: 'ok', version: apiVersion }));

  app.get('/api/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  app.get('/api/v1/vms', { schema: { response: { 200: Type.Array(VmView) } } }, async () => listVmDetails(context));

  app.post<{ Body: DeployBody }>('/api/v1/vms', { schema: { body: DeployBody, response: { 201: VmView, ...errors } } },
    (request, reply) => mutating(() => answerWithProgress(request, reply, 201, (progress) => deployVm(context, request.body, actorOf(request), progress)))());

  app.get<{ Params: NameParams }>('/api/v1/vms/:name', { schema: { params: NameParams, response: { 200: VmView, ...errors } } },
    async (request) => getVm(context, request.params.name));

  app.post<{ Params: NameParams }>('/api/v1/vms/:name/start', { schema: { params: NameParams, response: { 200: VmView, ...errors } } },
    (request, reply) => mutating(() => answerWithProgress(request, reply, 200, (progress) => startVm(context, request.params.name, actorOf(request), progress)))());

  app.post<{ Params: NameParams }>('/api/v1/vms/:name/stop', { schema: { params: NameParams, response: { 200: VmView, ...errors } } },
    (request) => mutating(() => stopVm(context, request.params.name, actorOf(request)))());

  app.post<{ Params: NameParams }>('/api/v1/vms/:name/restart', { schema: { params: NameParams, response: { 200: VmView, ...errors } } },
    (request, reply) => mutating(() => answerWithProgress(request, reply, 200, (progress) => restartVm(context, request.params.name, actorOf(request), progress)))());

  app.delete<{ Params: NameParams; Querystring: DeleteVmQuery }>('/api/v1/vms/:name', {
    schema: { params: NameParams, querystring: DeleteVmQuery, response: { 204: Type.Null(), ...errors } },
  }, (request, reply) => mutating(async () => {
    await deleteVm(context, request.params.name, { preserve: request.query.preserve_storage === 'true' }, actorOf(request));
    return reply.status(204).send();
  })());

  app.get<{ Params: NameParams }>('/api/v1/vms/:name/ssh', { schema: { params: NameParams, response: { 200: SshTarget, ...errors } } },
    async (request) => sshTarget(context, request.params.name));

  app.post<{ Params: NameParams; Body: AttachBody }>('/api/v1/vms/:name/volumes', {
    schema: { params: NameParams, body: AttachBody, response: { 200: VolumeView, ...errors } },
  }, (request) => mutating(() => attachVolume(context, request.params.name, request.body.volume, actorOf(request)))());

  app.delete<{ Params: VmVolumeParams }>('/api/v1/vms/:name/volumes/:volume', {
    schema: { params: VmVolumeParams, response: { 200: VolumeView, ...errors } },
  }, (request) => mutating(() => detachVolume(context, request.params.name, request.params.volume, actorOf(request)))());

  app.post<{ Params: NameParams; Body: ExposeBody }>('/api/v1/vms/:name/ports', {
    schema: { params: NameParams, body: ExposeBody, response: { 200: VmView, ...errors } },
  }, (request) => mutating(() => exposePort(context, request.params.name, request.body, actorOf(request)))());

  app.delete<{ Params: VmPortParams; Querystring: UnexposeQuery }>('/api/v1/vms/:name/ports/:port', {
    schema: { params: VmPortParams, querystring: UnexposeQuery, response: { 200: VmView, ...errors } },
  }, (request) => mutating(() => unexposePort(context, request.params.name, { port: request.params.port, protocol: request.query.protocol }, actorOf(request)))());

  app.get('/api/v1/networks', { schema: { response: { 200: Type.Array(NetworkView) } } }, async () => listNetworks(context));

  app.post<{ Body: CreateNetworkBody }>('/api/v1/networks', { schema: { body: CreateNetworkBody, response: { 201: NetworkView, ...errors } } },
    (request, reply) => mutating(async () => reply.status(201).send(await createNetwork(context, request.body, actorOf(request))))());

  app.delete<{ Params: NameParams }>('/api/v1/networks/:name', { schema: { params: NameParams, response: { 204: Type.Null(), ...errors } } },
    (request, reply) => mutating(async () => {
      await deleteNetwork(context, request.params.name, actorOf(request));
      return reply.status(204).send();
    })());

  app.get('/api/v1/volumes', { schema: { response: { 200: Type.Array(VolumeView) } } }, async () => listVolumes(context));

  app.post<{ Body: CreateVolumeBody }>('/api/v1/volumes', { schema: { body: CreateVolumeBody, response: { 201: VolumeView, ...errors } } },
    (request, reply) => mutating(async () => reply.status(201).send(await createVolume(context, request.body, actorOf(request))))());

  app.get<{ Params: NameParams }>('/api/v1/volumes/:name', { schema: { params: NameParams, response: { 200: VolumeView, ...errors } } },
    async (request) => showVolume(context, request.params.name));

  app.post<{ Params: NameParams; Body: ResizeBody }>('/api/v1/volumes/:name/resize', {
    schema: { params: NameParams, body: ResizeBody, response: { 200: VolumeView, ...errors } },
  }, (request) => mutating(() => resizeVolume(context, request.params.name, request.body.size, actorOf(request)))());

  app.delete<{ Params: NameParams }>('/api/v1/volumes/:name', { schema: { params: NameParams, response: { 204: Type.Null(), ...errors } } },
    (request, reply) => mutating(async () => {
      await deleteVolume(context, request.params.name, actorOf(request));
      return reply.status(204).send();
    })());

  app.get('/api/v1/images', async () => context.images.list());

  app.get<{ Querystring: HistoryQuery }>('/api/v1/history', {
    schema: { querystring: HistoryQuery, response: { 200: Type.Array(AuditEntry) } },
  }, async (request) => context.store.listAudit({ limit: Number(request.query.limit ?? 50), action: request.query.action, target: request.query.target }));

  app.get('/api/v1/doctor', async () => ({
    accelerator: (await info.accelerator()) ?? null,
    // A fresh run, so a volume file that went missing a moment ago shows up now.
    reconciler: info.ready() ? await reconcile(context) : info.lastReconcile() ?? null,
    data_dir: context.paths.root,
    free_bytes: await context.volumes.freeBytes(context.paths.root),
  }));

  return app;
}

export { isErrorCode };
