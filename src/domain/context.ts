import type { Config } from '../config.js';
import type { Store } from '../db/store.js';
import type { AcceleratorChoice } from '../engine/accelerator.js';
import type { Engine } from '../engine/engine.js';
import type { ImageStore } from '../images/store.js';
import type { Logger } from '../log.js';
import type { Cidr } from '../network/cidr.js';
import type { Network } from '../network/network.js';
import type { DataPaths } from '../paths.js';
import type { VolumeTool } from '../storage/volume-tool.js';

/** Waits for a booted VM to be reachable; the real one polls sshd's banner. */
export interface Readiness {
  wait(ip: string, options: { timeoutMs: number; stillRunning: () => Promise<boolean> }): Promise<void>;
}

/** Everything the domain operations need, each side effect behind an interface. */
export interface Context {
  store: Store;
  config: Config;
  paths: DataPaths;
  volumes: VolumeTool;
  engine: Engine;
  network: Network;
  images: ImageStore;
  readiness: Readiness;
  log: Logger;
  subnet: Cidr;
  bridge: string;
  sshPublicKey: string;
  accelerator(kernel: string): Promise<AcceleratorChoice>;
  /**
   * Called after each journaled step. Tests set SISTEMO_TEST_CRASH_AT=kind:step so the daemon
   * kills itself there; in production it does nothing.
   */
  checkpoint(kind: string, step: string): void;
}

/** A progress callback for long operations; lines go to the client that asked. */
export type Progress = (message: string) => void;

/** The requester of an operation, as the audit log records it. */
export type Actor = string;
