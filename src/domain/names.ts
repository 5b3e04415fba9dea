import { invalid } from '../errors.js';

/** The maximum name length of a VM, volume or network: a DNS label, so a VM name is also a hostname. */
export const maxNameLength = 63;

const namePattern = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;

/**
 * Checks a user-given name against the one rule every name follows: 1 to 63 characters,
 * lowercase letters, digits and inner hyphens. Names never contain `/`, `.`, `_` or spaces, so
 * they are safe in messages and kernel parameters and can never reach a file path.
 */
export function validateName(name: string, what: string): string {
  const shown = JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}...` : name);
  if (name.length === 0) throw invalid(`Invalid ${what} name "": use 1 to 63 lowercase letters, digits and hyphens, such as web-1`);
  if (name.length > maxNameLength) {
    throw invalid(`Invalid ${what} name ${shown}: it has ${name.length} characters, the maximum is ${maxNameLength}`);
  }
  if (!namePattern.test(name)) {
    throw invalid(`Invalid ${what} name ${shown}: use lowercase letters, digits and hyphens (not at either end), such as web-1`);
  }
  return name;
}

/** Returns the name of the root volume that `vm deploy` creates for a VM. */
export function rootVolumeName(vmName: string): string {
  return `${vmName}-root`;
}

/** The longest VM name whose root volume name still fits the name rule. */
export const maxVmNameLength = maxNameLength - '-root'.length;

export function validateVmName(name: string): string {
  validateName(name, 'VM');
  if (name.length > maxVmNameLength) {
    throw invalid(`Invalid VM name "${name}": the maximum is ${maxVmNameLength} characters, so that "${rootVolumeName(name)}" fits`);
  }
  return name;
}

/**
 * Returns the virtio-blk serial of a data volume. A serial is at most 20 bytes, so a longer
 * name becomes its first 7 characters, `_` and the 12-character volume id. Names never contain
 * `_` and ids are unique, so a short form cannot equal another volume's name or short form.
 */
export function volumeSerial(volume: { name: string; id: string }): string {
  if (volume.name.length <= 20) return volume.name;
  return `${volume.name.slice(0, 7)}_${volume.id.slice(-12)}`;
}
