import type { Cidr } from '../../src/network/cidr.js';
import type { Network } from '../../src/network/network.js';
import { UnexpectedCallError } from './strict.js';

/**
 * A Network that keeps taps in a set. Tap creation and deletion are idempotent, as in the real
 * one. Bridge and NAT setup belong to daemon start, so the domain calling them is an error.
 */
export class FakeNetwork implements Network {
  readonly taps = new Set<string>();
  createTapFailure: Error | undefined;

  constructor(private readonly bridge: string) {}

  async ensureBridge(bridge: string, subnet: Cidr): Promise<void> {
    throw new UnexpectedCallError('Network', 'ensureBridge', [bridge, subnet]);
  }

  async createTap(tap: string, bridge: string): Promise<void> {
    if (bridge !== this.bridge) throw new UnexpectedCallError('Network', 'createTap', [tap, bridge]);
    if (this.createTapFailure) throw this.createTapFailure;
    this.taps.add(tap);
  }

  async deleteTap(tap: string): Promise<void> {
    this.taps.delete(tap);
  }

  async tapExists(tap: string): Promise<boolean> {
    return this.taps.has(tap);
  }

  async applyNat(enabled: boolean, bridge: string, subnet: Cidr): Promise<void> {
    throw new UnexpectedCallError('Network', 'applyNat', [enabled, bridge, subnet]);
  }
}
