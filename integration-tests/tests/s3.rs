//! The S3 server started by scripts/infra stores objects and checks
//! signatures.

use chatmesh_integration_tests::Infra;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};

fn store(infra: &Infra, secret: &str) -> anyhow::Result<impl ObjectStore> {
    Ok(AmazonS3Builder::new()
        .with_endpoint(&infra.s3_endpoint)
        .with_region(&infra.s3_region)
        .with_bucket_name(&infra.s3_bucket)
        .with_access_key_id(&infra.s3_access_key)
        .with_secret_access_key(secret)
        .with_virtual_hosted_style_request(false)
        .with_allow_http(true)
        .build()?)
}

#[tokio::test]
async fn put_and_get_an_object() -> anyhow::Result<()> {
    let infra = Infra::load()?;
    let s3 = store(&infra, &infra.s3_secret_key)?;
    let path = Path::from(format!("test/{}/blob.bin", uuid::Uuid::new_v4()));
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
    s3.put(&path, PutPayload::from(bytes.clone())).await?;

    let head = s3.head(&path).await?;
    assert_eq!(head.size, bytes.len() as u64);
    let got = s3.get(&path).await?.bytes().await?;
    assert_eq!(got.as_ref(), bytes.as_slice());

    s3.delete(&path).await?;
    assert!(matches!(
        s3.head(&path).await,
        Err(object_store::Error::NotFound { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn a_wrong_secret_is_refused() -> anyhow::Result<()> {
    let infra = Infra::load()?;
    let forged = store(&infra, "not-the-secret")?;
    let path = Path::from(format!("test/{}/forged.bin", uuid::Uuid::new_v4()));
    let err = forged
        .put(&path, PutPayload::from_static(b"x"))
        .await
        .expect_err("a bad signature must fail");
    let text = err.to_string();
    assert!(
        text.contains("403") || text.contains("SignatureDoesNotMatch"),
        "{text}"
    );
    Ok(())
}
