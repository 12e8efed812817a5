/**
 * The few XML shapes the Blob REST API speaks to us: the List Blobs
 * EnumerationResults, the <Error> body, and the Put Block List request. These
 * are fixed, service-generated documents (no CDATA, no DTD, text escaped with
 * the five predefined entities and character references), so a small parser
 * for exactly these shapes is enough; anything unexpected is an error rather
 * than a guess.
 */

export interface ListedBlob {
  /** Full blob name (container-relative). */
  name: string;
  size: number;
  /** Quoted, like the ETag response header. */
  etag: string;
  lastModified: Date;
}

export interface ListPage {
  blobs: ListedBlob[];
  /** Opaque continuation token; undefined on the last page. */
  nextMarker: string | undefined;
}

export class XmlShapeError extends Error {}

export function parseListBlobs(xml: string): ListPage {
  if (!/<EnumerationResults[\s>]/.test(xml)) throw new XmlShapeError('not a List Blobs response');
  const blobs: ListedBlob[] = [];
  const blobsSection = /<Blobs\s*\/>|<Blobs>([\s\S]*?)<\/Blobs>/.exec(xml);
  const body = blobsSection?.[1] ?? '';
  for (const m of body.matchAll(/<Blob>([\s\S]*?)<\/Blob>/g)) {
    const b = m[1];
    const nameM = /<Name(\s[^>]*)?>([\s\S]*?)<\/Name>/.exec(b);
    if (!nameM) throw new XmlShapeError('a listed blob has no <Name>');
    // Names with characters XML cannot carry come back URL-encoded with Encoded="true".
    const encoded = /\bEncoded\s*=\s*"true"/i.test(nameM[1] ?? '');
    const text = decodeEntities(nameM[2]);
    let name = text;
    if (encoded) {
      try {
        name = decodeURIComponent(text);
      } catch {
        throw new XmlShapeError('a listed blob has a malformed Encoded name');
      }
    }
    const props = /<Properties>([\s\S]*?)<\/Properties>/.exec(b)?.[1] ?? '';
    // Hierarchical-namespace accounts list directories as blobs: they are not objects.
    if (/<ResourceType>\s*directory\s*<\/ResourceType>/i.test(props)) continue;
    const size = Number(elementText(props, 'Content-Length'));
    const etag = elementText(props, 'Etag');
    const lm = new Date(elementText(props, 'Last-Modified'));
    if (!Number.isSafeInteger(size) || size < 0 || !etag || Number.isNaN(lm.getTime())) {
      throw new XmlShapeError(`listed blob '${name}' lacks Content-Length, Etag or Last-Modified`);
    }
    blobs.push({ name, size, etag: quoteEtag(etag), lastModified: lm });
  }
  // NextMarker is a sibling of <Blobs>: look only after the blob list so a blob
  // named "<NextMarker>" (escaped anyway) can never be mistaken for it.
  const tail = blobsSection ? xml.slice(blobsSection.index + blobsSection[0].length) : xml;
  const nm = /<NextMarker>([\s\S]*?)<\/NextMarker>/.exec(tail);
  const nextMarker = nm ? decodeEntities(nm[1]) : undefined;
  return { blobs, nextMarker: nextMarker ? nextMarker : undefined };
}

/** Code and first line of Message of an <Error> body (either may be missing). */
export function parseError(xml: string): { code?: string; message?: string } {
  const code = /<Code>([\s\S]*?)<\/Code>/.exec(xml)?.[1];
  const message = /<Message>([\s\S]*?)<\/Message>/.exec(xml)?.[1];
  return {
    code: code ? decodeEntities(code).trim() : undefined,
    message: message ? decodeEntities(message).split(/\r?\n/)[0].trim() : undefined,
  };
}

export function blockListXml(blockIds: readonly string[]): string {
  return (
    '<?xml version="1.0" encoding="utf-8"?><BlockList>' +
    blockIds.map((id) => `<Latest>${escapeText(id)}</Latest>`).join('') +
    '</BlockList>'
  );
}

/** ETags as the HTTP header shows them ("0x8D..."); listings omit the quotes. */
export function quoteEtag(etag: string): string {
  const t = etag.trim();
  return t.startsWith('"') || t.startsWith('W/') ? t : `"${t}"`;
}

function elementText(xml: string, tag: string): string {
  const m = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(xml);
  return m ? decodeEntities(m[1]).trim() : '';
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

export function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (whole, ent: string) => {
    if (ent[0] === '#') {
      const cp = ent[1] === 'x' ? Number.parseInt(ent.slice(2), 16) : Number.parseInt(ent.slice(1), 10);
      if (!Number.isFinite(cp) || cp > 0x10ffff) throw new XmlShapeError(`bad character reference ${whole}`);
      return String.fromCodePoint(cp);
    }
    const v = ENTITIES[ent];
    if (v === undefined) throw new XmlShapeError(`unknown entity ${whole}`);
    return v;
  });
}

function escapeText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
