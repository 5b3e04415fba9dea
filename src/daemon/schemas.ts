import { Type, type Static } from '@sinclair/typebox';

/** Request and response shapes of /api/v1. They feed validation and the OpenAPI description. */

const name = Type.String({ minLength: 1, maxLength: 300, description: 'A name: lowercase letters, digits and inner hyphens, 1 to 63 characters' });
const size = Type.String({ maxLength: 64, description: 'A size such as 5G or 512M; all units are powers of 1024' });

export const ErrorBody = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String() }),
}, { $id: 'Error' });

export const DeployBody = Type.Object({
  image: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, description: 'debian, or the absolute path of a local .ext4 image' })),
  name: Type.Optional(name),
  vcpus: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
  memory: Type.Optional(size),
  storage: Type.Optional(size),
  attach: Type.Optional(Type.Array(name, { maxItems: 64 })),
  volume: Type.Optional(name),
  network: Type.Optional(Type.String({ minLength: 1, maxLength: 300, description: 'A named network, or default for the default bridge' })),
  expose: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 32, description: '[HOST:]PORT, forwarded over TCP' }), { maxItems: 64 })),
}, { additionalProperties: false });
export type DeployBody = Static<typeof DeployBody>;

export const CreateVolumeBody = Type.Object({
  size,
  name: Type.Optional(name),
}, { additionalProperties: false });
export type CreateVolumeBody = Static<typeof CreateVolumeBody>;

export const ResizeBody = Type.Object({ size }, { additionalProperties: false });
export type ResizeBody = Static<typeof ResizeBody>;

export const AttachBody = Type.Object({ volume: name }, { additionalProperties: false });
export type AttachBody = Static<typeof AttachBody>;

export const CreateNetworkBody = Type.Object({
  name,
  subnet: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'A private IPv4 subnet of /16 to /29, such as 10.201.7.0/24; default: a free /24 of 10.201.0.0/16' })),
}, { additionalProperties: false });
export type CreateNetworkBody = Static<typeof CreateNetworkBody>;

const protocol = Type.String({ minLength: 1, maxLength: 16, description: 'tcp (the default) or udp' });

export const ExposeBody = Type.Object({
  port: Type.String({ minLength: 1, maxLength: 32, description: '[HOST:]PORT: the host port, and the VM port when it differs' }),
  protocol: Type.Optional(protocol),
}, { additionalProperties: false });
export type ExposeBody = Static<typeof ExposeBody>;

export const VmPortParams = Type.Object({ name: Type.String({ maxLength: 300 }), port: Type.String({ maxLength: 32 }) });
export type VmPortParams = Static<typeof VmPortParams>;

export const UnexposeQuery = Type.Object({ protocol: Type.Optional(protocol) }, { additionalProperties: false });
export type UnexposeQuery = Static<typeof UnexposeQuery>;

export const NetworkView = Type.Object({
  name: Type.String(),
  subnet: Type.String(),
  bridge: Type.String(),
  vm_count: Type.Integer(),
}, { additionalProperties: false });

export const NameParams = Type.Object({ name: Type.String({ maxLength: 300 }) });
export type NameParams = Static<typeof NameParams>;

export const VmVolumeParams = Type.Object({ name: Type.String({ maxLength: 300 }), volume: Type.String({ maxLength: 300 }) });
export type VmVolumeParams = Static<typeof VmVolumeParams>;

export const DeleteVmQuery = Type.Object({
  preserve_storage: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')], { description: 'Keep the root volume, detached' })),
}, { additionalProperties: false });
export type DeleteVmQuery = Static<typeof DeleteVmQuery>;

export const HistoryQuery = Type.Object({
  limit: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,3}$', description: 'How many entries, newest first: 1 to 9999 (default 50)' })),
  action: Type.Optional(Type.String({ maxLength: 100 })),
  target: Type.Optional(Type.String({ maxLength: 300 })),
}, { additionalProperties: false });
export type HistoryQuery = Static<typeof HistoryQuery>;

export const VolumeView = Type.Object({
  name: Type.String(),
  id: Type.String(),
  size_bytes: Type.Integer(),
  size: Type.String(),
  status: Type.Union([Type.Literal('attached'), Type.Literal('detached'), Type.Literal('busy'), Type.Literal('error')]),
  attached_to: Type.Union([Type.String(), Type.Null()]),
  type: Type.Union([Type.Literal('root'), Type.Literal('data')]),
  message: Type.Union([Type.String(), Type.Null()]),
  created_at: Type.String(),
}, { additionalProperties: false });

export const VmView = Type.Object({
  name: Type.String(),
  id: Type.String(),
  status: Type.String(),
  vcpus: Type.Integer(),
  memory_bytes: Type.Integer(),
  memory: Type.String(),
  ip: Type.Union([Type.String(), Type.Null()]),
  image: Type.String(),
  root_volume: Type.Union([Type.String(), Type.Null()]),
  volumes: Type.Array(Type.Object({ name: Type.String(), type: Type.String(), role: Type.String(), size: Type.String() })),
  network: Type.String(),
  ports: Type.Array(Type.Object({ host_port: Type.Integer(), vm_port: Type.Integer(), protocol: Type.String() })),
  created_at: Type.String(),
}, { additionalProperties: false });

export const AuditEntry = Type.Object({
  id: Type.Integer(),
  time: Type.String(),
  actor: Type.String(),
  action: Type.String(),
  target: Type.String(),
  result: Type.Union([Type.Literal('ok'), Type.Literal('failed')]),
  details: Type.Record(Type.String(), Type.Unknown()),
  error: Type.Union([Type.String(), Type.Null()]),
});

export const SshTarget = Type.Object({
  host: Type.String(),
  user: Type.String(),
  identity_file: Type.String(),
  connect_timeout_sec: Type.Integer(),
});
