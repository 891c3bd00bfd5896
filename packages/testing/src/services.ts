/**
 * Suites that need a server (Postgres, Redis) call this when it cannot be reached: it
 * prints a loud notice and lets the suite skip, or, with KEYWARD_REQUIRE_SERVICES=1 (CI),
 * throws so the run fails instead of passing on nothing. `skipped` names what is skipped
 * in the notice.
 */
export function serviceUnavailable(service: string, reason: unknown, skipped = 'tests'): void {
  const detail = reason instanceof Error ? reason.message : String(reason);
  if (requireServices()) {
    throw new Error(
      `${service} is required (KEYWARD_REQUIRE_SERVICES=1) but unreachable: ${detail}`,
    );
  }
  console.warn(
    `\n${'!'.repeat(72)}\n!! SKIPPING ${service} ${skipped}: unreachable (${detail}).\n!! Set KEYWARD_REQUIRE_SERVICES=1 to make this a failure.\n${'!'.repeat(72)}\n`,
  );
}

export function requireServices(): boolean {
  return process.env.KEYWARD_REQUIRE_SERVICES === '1';
}
