// A small client of the Kubernetes CRI (runtime.v1) for the containerd tests:
// only the calls test/integration/cri.test.ts makes, over @grpc/grpc-js, with
// each message encoded by hand from the field numbers of k8s.io/cri-api's
// pkg/apis/runtime/v1/api.proto (no generated code).
import * as grpc from '@grpc/grpc-js';
import { encodeVarint } from '../src/checkpoint/criu/images.ts';

// --- protobuf wire format (only what these messages use) -------------------

type Field =
  | { n: number; s: string } // string (wire type 2)
  | { n: number; m: Buffer } // embedded message (wire type 2)
  | { n: number; v: number | bigint }; // varint (wire type 0)

export function encode(fields: Array<Field | undefined | false>): Buffer {
  const parts: Buffer[] = [];
  for (const f of fields) {
    if (!f) continue;
    if ('v' in f) {
      parts.push(encodeVarint((f.n << 3) | 0), encodeVarint(f.v));
      continue;
    }
    const body = 's' in f ? Buffer.from(f.s, 'utf8') : f.m;
    parts.push(encodeVarint((f.n << 3) | 2), encodeVarint(body.length), body);
  }
  return Buffer.concat(parts);
}

/** A map<string,string> field: one entry message (key = 1, value = 2) per pair. */
function mapField(n: number, map: Record<string, string> | undefined): Field[] {
  return Object.entries(map ?? {}).map(([k, v]) => ({ n, m: encode([{ n: 1, s: k }, { n: 2, s: v }]) }));
}

export interface Decoded {
  [field: number]: Array<Buffer | bigint>;
}

export function decode(buf: Buffer): Decoded {
  const out: Decoded = {};
  let i = 0;
  const readVarint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (i >= buf.length) throw new Error('truncated protobuf varint');
      const byte = buf[i++];
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (i < buf.length) {
    const key = Number(readVarint());
    const n = key >>> 3;
    const wire = key & 7;
    let value: Buffer | bigint;
    if (wire === 0) value = readVarint();
    else if (wire === 2) {
      const len = Number(readVarint());
      value = buf.subarray(i, i + len);
      i += len;
    } else if (wire === 1) {
      value = buf.readBigUInt64LE(i);
      i += 8;
    } else if (wire === 5) {
      value = BigInt(buf.readUInt32LE(i));
      i += 4;
    } else throw new Error(`unsupported protobuf wire type ${wire}`);
    (out[n] ??= []).push(value);
  }
  return out;
}

const str = (d: Decoded, n: number): string => {
  const v = d[n]?.[0];
  return Buffer.isBuffer(v) ? v.toString('utf8') : '';
};
const msg = (d: Decoded, n: number): Decoded => {
  const v = d[n]?.[0];
  return Buffer.isBuffer(v) ? decode(v) : {};
};
const num = (d: Decoded, n: number): number => {
  const v = d[n]?.[0];
  return typeof v === 'bigint' ? Number(BigInt.asIntN(64, v)) : 0;
};
function strMap(d: Decoded, n: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of d[n] ?? []) if (Buffer.isBuffer(v)) { const e = decode(v); out[str(e, 1)] = str(e, 2); }
  return out;
}

// --- CRI messages ----------------------------------------------------------

export interface PodConfig {
  name: string;
  uid: string;
  namespace: string;
  logDirectory: string;
  hostname?: string;
  /** The pod uses the host's network namespace (NamespaceMode NODE): no CNI set-up. */
  hostNetwork?: boolean;
}

/**
 * PodSandboxConfig: metadata = 1 {name 1, uid 2, namespace 3, attempt 4},
 * hostname = 2, log_directory = 3, linux = 8 {security_context = 2
 * {namespace_options = 1 {network = 1 (NamespaceMode: POD 0, CONTAINER 1, NODE 2)}}}.
 */
export function podSandboxConfig(p: PodConfig): Buffer {
  const namespaces = namespaceOptions(p.hostNetwork);
  return encode([
    { n: 1, m: encode([{ n: 1, s: p.name }, { n: 2, s: p.uid }, { n: 3, s: p.namespace }]) },
    p.hostname !== undefined && { n: 2, s: p.hostname },
    { n: 3, s: p.logDirectory },
    { n: 8, m: encode([{ n: 2, m: encode([{ n: 1, m: namespaces }]) }]) },
  ]);
}

/**
 * NamespaceOption: network = 1, pid = 2 (NamespaceMode: POD 0, CONTAINER 1,
 * NODE 2). As the kubelet sends them for a pod without shareProcessNamespace:
 * each container its own PID namespace; the host's network for hostNetwork.
 */
function namespaceOptions(hostNetwork: boolean | undefined): Buffer {
  return encode([{ n: 1, v: hostNetwork ? 2 : 0 }, { n: 2, v: 1 }]);
}

// What the kubelet masks and makes read-only in every container that does not
// ask for an unmasked /proc (kubernetes: pkg/securitycontext/util.go).
const MASKED_PATHS = ['/proc/asound', '/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap'];
const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

export interface ContainerSpec {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  logPath: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  hostNetwork?: boolean;
}

/**
 * ContainerConfig: metadata = 1 {name 1}, image = 2 {image 1}, command = 3,
 * args = 4, labels = 9, annotations = 10, log_path = 11, linux = 15
 * {security_context = 2 {namespace_options = 3, masked_paths = 13, readonly_paths = 14}}.
 */
function containerConfig(c: ContainerSpec): Buffer {
  const security = encode([
    { n: 3, m: namespaceOptions(c.hostNetwork) },
    ...MASKED_PATHS.map((s) => ({ n: 13, s })),
    ...READONLY_PATHS.map((s) => ({ n: 14, s })),
  ]);
  return encode([
    { n: 1, m: encode([{ n: 1, s: c.name }]) },
    { n: 2, m: encode([{ n: 1, s: c.image }]) },
    ...(c.command ?? []).map((s) => ({ n: 3, s })),
    ...(c.args ?? []).map((s) => ({ n: 4, s })),
    ...mapField(9, c.labels),
    ...mapField(10, c.annotations),
    { n: 11, s: c.logPath },
    { n: 15, m: encode([{ n: 2, m: security }]) },
  ]);
}

export const ContainerState = ['CREATED', 'RUNNING', 'EXITED', 'UNKNOWN'] as const;

export interface ContainerStatusInfo {
  id: string;
  name: string;
  state: (typeof ContainerState)[number];
  exitCode: number;
  image: string;
  imageRef: string;
  reason: string;
  message: string;
  logPath: string;
  annotations: Record<string, string>;
}

// --- the client ------------------------------------------------------------

const RUNTIME = '/runtime.v1.RuntimeService/';
const IMAGES = '/runtime.v1.ImageService/';

export class CriClient {
  private readonly client: grpc.Client;

  constructor(socketPath: string) {
    this.client = new grpc.Client(`unix://${socketPath}`, grpc.credentials.createInsecure());
  }

  close(): void {
    this.client.close();
  }

  call(method: string, request: Buffer, timeoutMs = 240_000): Promise<Decoded> {
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        method,
        (b: Buffer) => b,
        (b: Buffer) => b,
        request,
        { deadline: Date.now() + timeoutMs },
        (err, res) => {
          if (err) reject(new Error(`CRI ${method.split('/').pop()}: ${err.details || err.message}`));
          else resolve(decode(res ?? Buffer.alloc(0)));
        },
      );
    });
  }

  /** Version: VersionRequest {version 1} → {version 1, runtime_name 2, runtime_version 3, runtime_api_version 4}. */
  async version(): Promise<{ runtimeName: string; runtimeVersion: string; apiVersion: string }> {
    const d = await this.call(`${RUNTIME}Version`, encode([{ n: 1, s: 'v1' }]), 10_000);
    return { runtimeName: str(d, 2), runtimeVersion: str(d, 3), apiVersion: str(d, 4) };
  }

  /** PullImage: {image 1: ImageSpec {image 1}} → {image_ref 1}. */
  async pullImage(image: string): Promise<string> {
    const d = await this.call(`${IMAGES}PullImage`, encode([{ n: 1, m: encode([{ n: 1, s: image }]) }]));
    return str(d, 1);
  }

  /** RunPodSandbox: {config 1} → {pod_sandbox_id 1}. */
  async runPodSandbox(pod: PodConfig): Promise<string> {
    const d = await this.call(`${RUNTIME}RunPodSandbox`, encode([{ n: 1, m: podSandboxConfig(pod) }]));
    return str(d, 1);
  }

  /** CreateContainer: {pod_sandbox_id 1, config 2, sandbox_config 3} → {container_id 1}. */
  async createContainer(podId: string, pod: PodConfig, c: ContainerSpec): Promise<string> {
    const d = await this.call(
      `${RUNTIME}CreateContainer`,
      encode([{ n: 1, s: podId }, { n: 2, m: containerConfig(c) }, { n: 3, m: podSandboxConfig(pod) }]),
    );
    return str(d, 1);
  }

  async startContainer(id: string): Promise<void> {
    await this.call(`${RUNTIME}StartContainer`, encode([{ n: 1, s: id }]));
  }

  /** StopContainer: {container_id 1, timeout 2 (seconds)}. */
  async stopContainer(id: string, timeoutSeconds = 0): Promise<void> {
    await this.call(`${RUNTIME}StopContainer`, encode([{ n: 1, s: id }, { n: 2, v: timeoutSeconds }]));
  }

  async removeContainer(id: string): Promise<void> {
    await this.call(`${RUNTIME}RemoveContainer`, encode([{ n: 1, s: id }]));
  }

  async stopPodSandbox(id: string): Promise<void> {
    await this.call(`${RUNTIME}StopPodSandbox`, encode([{ n: 1, s: id }]));
  }

  async removePodSandbox(id: string): Promise<void> {
    await this.call(`${RUNTIME}RemovePodSandbox`, encode([{ n: 1, s: id }]));
  }

  /** ContainerStatus: {container_id 1} → {status 1: ContainerStatus}. */
  async containerStatus(id: string): Promise<ContainerStatusInfo> {
    const d = msg(await this.call(`${RUNTIME}ContainerStatus`, encode([{ n: 1, s: id }])), 1);
    return {
      id: str(d, 1),
      name: str(msg(d, 2), 1),
      state: ContainerState[num(d, 3)] ?? 'UNKNOWN',
      exitCode: num(d, 7),
      image: str(msg(d, 8), 1),
      imageRef: str(d, 9),
      reason: str(d, 10),
      message: str(d, 11),
      annotations: strMap(d, 13),
      logPath: str(d, 15),
    };
  }

  /** CheckpointContainer: {container_id 1, location 2, timeout 3}. */
  async checkpointContainer(id: string, location: string): Promise<void> {
    await this.call(`${RUNTIME}CheckpointContainer`, encode([{ n: 1, s: id }, { n: 2, s: location }]));
  }
}
