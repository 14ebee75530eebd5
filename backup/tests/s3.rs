//! The backup store against a real S3-compatible server on loopback (`s3s-fs`), including the
//! server going down and coming back.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

use bytes::Bytes;
use walshard_backup::{ArchivedEntry, BackupStore, ShardArchiveMark, StoreOptions};
use walshard_testkit::s3::{ACCESS_KEY, S3Server, SECRET_KEY};

fn entry(lsn: u64) -> ArchivedEntry {
    ArchivedEntry {
        epoch: 2,
        lsn,
        op_id: u128::from(lsn) << 64,
        at_ms: 1_000 + lsn,
        payload: Bytes::from(vec![b'x'; 100]),
    }
}

fn open(server: &S3Server, prefix: &str) -> BackupStore {
    let options = StoreOptions {
        endpoint: Some(server.endpoint()),
        region: Some("us-east-1".into()),
        access_key_id: Some(ACCESS_KEY.into()),
        secret_access_key: Some(SECRET_KEY.into()),
    };
    BackupStore::open(&server.url(prefix), &options).unwrap()
}

#[tokio::test]
async fn chunks_marks_and_parts_round_trip_through_s3_and_survive_an_outage() {
    let mut server = S3Server::start("walshard").unwrap();
    let store = open(&server, "fleet-a");
    let entries: Vec<ArchivedEntry> = (1..=50).map(entry).collect();
    let first = store.put_chunk("sh1", &entries[..20]).await.unwrap();
    let second = store.put_chunk("sh1", &entries[20..]).await.unwrap();
    assert_eq!(
        store.chunks(Some("sh1")).await.unwrap(),
        vec![first.clone(), second]
    );
    assert_eq!(
        store.get_chunk(&first).await.unwrap(),
        entries[..20].to_vec()
    );
    store
        .put_mark(
            "sh1",
            ShardArchiveMark {
                through_lsn: 50,
                at_ms: 7,
            },
        )
        .await
        .unwrap();
    assert_eq!(store.marks().await.unwrap()["sh1"].through_lsn, 50);

    // Another prefix in the same bucket is another archive.
    assert!(
        open(&server, "fleet-b")
            .chunks(None)
            .await
            .unwrap()
            .is_empty()
    );

    server.stop().unwrap();
    let down = store.put_chunk("sh1", &[entry(51)]).await.unwrap_err();
    assert_eq!(down.code(), "backup-store-unavailable", "{down}");
    server.resume().unwrap();
    store.put_chunk("sh1", &[entry(51)]).await.unwrap();
    assert_eq!(store.chunks(Some("sh1")).await.unwrap().len(), 3);

    // A damaged object is refused with its name.
    let victim = server.bucket_dir().join("fleet-a").join(first.key());
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let err = store.get_chunk(&first).await.unwrap_err();
    assert_eq!(err.code(), "backup-object-damaged");
    assert!(err.to_string().contains(&first.key()), "{err}");
}
