// Where the page finds its gateways and the channels it lists: query
// parameters first, then the page server's /config.json.
//
//   ?gateway=ws://127.0.0.1:8080&gateway=ws://127.0.0.1:8081   (or one comma-separated value)
//   ?channel=lobby&channel=random                               (listed besides the config's)
//   ?user=alice                                                  (prefills the sign-in form)
//   ?config=/other.json                                          (another config file)

export interface PageConfig {
  /** Gateway WebSocket URLs, preferred first. */
  gateways: string[];
  /** Channel IDs the page lists besides the user's own channels (`GET /v1/channels`). */
  channels: string[];
  /** A user ID to prefill. */
  user: string | undefined;
}

interface ConfigFile {
  gateways?: unknown;
  gateway?: unknown;
  channels?: unknown;
}

function strings(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === "string");
  return [];
}

function splitAll(values: string[]): string[] {
  return values.flatMap((v) => v.split(",")).map((v) => v.trim()).filter((v) => v !== "");
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}

/** Reads the query of `search` and, unless it names gateways, the config file. */
export async function loadConfig(search: string, fetchFn: typeof fetch): Promise<PageConfig> {
  const query = new URLSearchParams(search);
  let gateways = splitAll(query.getAll("gateway"));
  let channels = splitAll(query.getAll("channel"));
  const user = query.get("user") ?? undefined;
  const path = query.get("config") ?? "config.json";
  let file: ConfigFile = {};
  try {
    const response = await fetchFn(path, { headers: { accept: "application/json" } });
    if (response.ok) file = (await response.json()) as ConfigFile;
  } catch {
    // No config file: the query must name the gateways.
  }
  if (gateways.length === 0) gateways = splitAll([...strings(file.gateways), ...strings(file.gateway)]);
  channels = unique([...splitAll(strings(file.channels)), ...channels]);
  return { gateways: unique(gateways), channels, user: user === "" ? undefined : user };
}
